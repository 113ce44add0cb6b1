"""The session's own connection, taken without SQLAlchemy's greenlet when nothing needs I/O.

``await db.connection()`` enters SQLAlchemy's greenlet, in case taking the connection talks
to the server: a pool checkout that connects or pings, a listener that runs SQL as the
transaction begins (a scoped session's ``after_begin``), a ``SAVEPOINT`` that a nested
transaction emits on first use, execution options that set an isolation level. The trip costs
about 14 µs per session, and ``fetch_in_transaction`` paid it for every statement.

``quietly`` takes the same connection by the same SQLAlchemy call, ``Session.connection()``,
as a plain call when none of that can happen:
- the session's current transaction holds its connection already (a dictionary lookup); or
- no transaction began, or the root one has no connection yet, and: the pool hands out a
  ready connection quietly (``EnginePool.checkout_quietly``'s conditions; a connection that
  is not ready raises inside the pool before anything else happens), no listener could run
  SQL (``engine_connect``, ``begin``, ``after_transaction_create``, and no ``after_begin``
  but the unscoped owner listener), no execution options apply at the connect, and the
  session's class does not override ``connection``.

Otherwise it returns ``None``, and the caller awaits ``db.connection()`` as before.
"""

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import driver_transaction
from app_db.ownership import OWNER, set_owner_on_begin
from app_db.pool import EnginePool


def quietly(db: AsyncSession) -> Connection | None:
    """Return the session's connection as ``db.connection()`` would, if that needs no I/O.

    ``None`` means it might: await ``db.connection()`` instead.
    """
    sync = db.sync_session
    if type(sync).connection is not OrmSession.connection:
        return None
    nested = sync.get_nested_transaction()
    if nested is not None:  # its SAVEPOINT is emitted when it first takes the connection
        return sync.connection() if nested.connections else None
    root = sync.get_transaction()
    if root is not None and root.connections:
        return sync.connection()
    bind = db.bind
    if not isinstance(bind, AsyncEngine) or not begins_quietly(db, bind, autobegin=root is None):
        return None
    pool = bind.sync_engine.pool
    assert isinstance(pool, EnginePool)  # begins_quietly checked it
    return pool.quietly(sync.connection)


def begins_quietly(db: AsyncSession, engine: AsyncEngine, *, autobegin: bool) -> bool:
    sync = db.sync_session
    sync_engine = engine.sync_engine
    if not isinstance(sync_engine.pool, EnginePool) or OWNER in db.info:
        return False
    if sync.execution_options or sync_engine.get_execution_options().get("isolation_level"):
        return False
    if autobegin and any(
        listener is not driver_transaction.adopt_held
        for listener in sync.dispatch.after_transaction_create
    ):
        return False
    if any(listener is not set_owner_on_begin for listener in sync.dispatch.after_begin):
        return False
    # Listeners on the Connection class itself set its flag; the engine's are its own.
    return not (
        Connection._has_events
        or _listened(sync_engine.dispatch.engine_connect)
        or _listened(sync_engine.dispatch.begin)
    )


def _listened(listeners: Any) -> bool:
    return bool(len(listeners))
