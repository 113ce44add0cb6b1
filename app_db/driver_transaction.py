"""A session's transaction begun on the driver, handed to SQLAlchemy only if it needs it.

A write that app_db sends itself (``fastpath.fetch_in_transaction``: ``sessions.issue``, say)
needs the session's transaction, and SQLAlchemy's costs about 65 µs of CPU before any SQL:
a ``Connection``, a ``SessionTransaction``, the greenlet, and their commit and close. When the
session has not begun one, app_db's ``Session`` holds a transaction of its own instead: a
ready pooled connection, borrowed quietly (``app_db.pool.borrow``), begun on SQLAlchemy's
asyncpg adapter as SQLAlchemy's first statement would begin it. Its statements go to the
driver, as the fast path's reads do; the ``transaction()`` block commits or rolls it back on
the adapter and gives the connection back.

When the session needs SQLAlchemy's transaction (an ORM flush, ``execute``, ``add``,
``connection()``, ``commit()`` or ``begin()``: anything that begins one), the transaction it
begins adopts the held connection, with its work so far, as SQLAlchemy's own connection:
from then on SQLAlchemy runs, commits, rolls back and closes it, and the connection goes back
to the pool as that transaction ends. ``rollback()``, ``close()``, ``reset()`` and
``invalidate()`` end a held transaction that SQLAlchemy never adopted, as they would end
SQLAlchemy's; ``in_transaction()`` is true while one is held. A statement lost with its
connection or cut short (cancelled) hands the transaction to SQLAlchemy invalidated, as its own
would be: every later statement and the commit raise until it is rolled back. As with
SQLAlchemy's, a session serves one task at a time: a second task that begins one meanwhile
fails (``InvalidRequestError``) and gives its connection back.

It applies to sessions of app_db's class (``create_sessionmaker``) bound to an engine with
app_db's pool, driver statements on, at the default isolation level, not scoped to an owner
(a scoped transaction begins by setting the scope), with no listener that SQLAlchemy would
run as a connection or transaction begins (``session_connection.begins_quietly``).
"""

import asyncio
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import await_only, greenlet_spawn
from sqlmodel import Session as SQLModelSession
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.closing import cancelling
from app_db.errors import DISCONNECTS
from app_db.lazy_session import built
from app_db.pool import borrow, drop, give_back

HELD = "app_db_held_transaction"
"""The key of ``Session.info`` for the session's ``Held`` transaction, while there is one."""


class Held:
    """A transaction begun on a pooled connection for a session, and that connection."""

    __slots__ = ("adopted", "engine", "pooled")

    def __init__(self, engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
        self.engine = engine
        self.pooled = pooled
        self.adopted: Connection | None = None
        """SQLAlchemy's ``Connection`` on it, once a transaction of the session adopted it."""


class Session(SQLModelSession):
    """SQLModel's session, able to hold a transaction begun on the driver (see the module)."""

    def in_transaction(self) -> bool:
        return HELD in self.info or super().in_transaction()

    def begin(self, nested: bool = False) -> SessionTransaction:  # noqa: FBT001, FBT002 - its signature
        adopt(self)  # a transaction is under way: SQLAlchemy's begin() then says so
        return super().begin(nested=nested)

    def rollback(self) -> None:
        try:
            _end_unadopted(self)
        finally:
            super().rollback()

    def close(self) -> None:
        try:
            _end_unadopted(self)
        finally:
            super().close()

    def reset(self) -> None:
        try:
            _end_unadopted(self)
        finally:
            super().reset()

    def invalidate(self) -> None:
        try:
            _end_unadopted(self, invalidate=True)
        finally:
            super().invalidate()


def held(db: AsyncSession) -> Held | None:
    """Return the transaction the session holds on the driver, unless SQLAlchemy adopted it."""
    sync = built(db)
    found: Held | None = None if sync is None else sync.info.get(HELD)
    return found if found is not None and found.adopted is None else None


async def begin(db: AsyncSession, engine: AsyncEngine) -> Held | None:
    """Begin a held transaction for the session on a connection of ``engine``, if it can.

    The caller checked that the session may hold one (see the module). ``None``: no
    connection was ready without I/O, or the adapter is not one app_db knows; the caller then
    goes through SQLAlchemy.
    """
    pooled = await borrow(engine)
    try:
        begun = await begin_on_adapter(pooled.dbapi_connection)
    except BaseException as exc:
        await drop(pooled, exc)
        raise
    if not begun:
        await give_back(engine, pooled)
        return None
    info = db.sync_session.info
    if HELD in info:  # another task began one on this session meanwhile: one session, one task
        await end(db, Held(engine, pooled), commit=False, held_by_session=False)
        raise sa_exc.InvalidRequestError(
            "the session began a transaction for another task meanwhile: a session serves "
            "one task at a time"
        )
    transaction = Held(engine, pooled)
    info[HELD] = transaction
    return transaction


async def end(
    db: AsyncSession, transaction: Held, *, commit: bool, held_by_session: bool = True
) -> None:
    """Commit or roll back a held transaction, then give its connection back (or drop it)."""
    if held_by_session:
        del db.sync_session.info[HELD]
    engine, pooled = transaction.engine, transaction.pooled
    if not commit and cancelling():  # a hung server never answers a ROLLBACK
        await drop(pooled, asyncio.CancelledError())
        return
    try:
        await _finish(pooled.dbapi_connection, commit=commit)
    except BaseException as exc:
        await drop(pooled, exc)
        raise
    await give_back(engine, pooled)


async def lost(db: AsyncSession, cause: BaseException) -> None:
    """Hand SQLAlchemy a held transaction whose statement was lost or cut short, invalidated.

    As with SQLAlchemy's own connection, the session's transaction then refuses every
    statement and its commit (``PendingRollbackError``) until it is rolled back: a caller who
    catches the error cannot commit the rest of the block without its first part. The
    connection is closed, never given back.
    """
    await greenlet_spawn(_adopt_invalidated, db.sync_session, cause)


def _adopt_invalidated(session: Any, cause: BaseException) -> None:
    adopt(session)
    found: Held = session.info[HELD]
    assert found.adopted is not None
    found.adopted.invalidate(cause if isinstance(cause, Exception) else None)


async def _finish(adapted: Any, *, commit: bool) -> None:
    """COMMIT or ROLLBACK the adapter's transaction, as its own ``commit``/``rollback`` would."""
    transaction = adapted._transaction
    if transaction is None:
        return
    try:
        await (transaction.commit() if commit else transaction.rollback())
    finally:
        adapted._transaction = None


async def begin_on_adapter(adapted: Any) -> bool:
    """Begin the transaction on SQLAlchemy's asyncpg adapter if it has not; say if it could.

    SQLAlchemy's ``BEGIN`` is lazy with asyncpg: its adapter sends it (at the session's
    isolation level) just before the first statement that goes through SQLAlchemy. A statement
    sent to the driver first would run outside the transaction, committed on its own, and
    SQLAlchemy's ``COMMIT`` and ``ROLLBACK`` would then send nothing. So the adapter begins
    here, as its own cursor would, under the same lock. An adapter without these parts (a
    later SQLAlchemy) makes the caller go through SQLAlchemy instead: slower, never wrong.
    """
    start = getattr(adapted, "_start_transaction", None)
    mutex = getattr(adapted, "_execute_mutex", None)
    if start is None or mutex is None or not hasattr(adapted, "_transaction"):
        return False
    if adapted._transaction is None:
        async with mutex:
            if adapted._transaction is None:
                try:
                    await start()
                except Exception as exc:  # the adapter's error: raise the driver's, as a call would
                    driver_error = getattr(exc, "driver_exception", None)
                    if isinstance(driver_error, DISCONNECTS):
                        raise driver_error from None
                    raise
    return True


def adopt(session: Any) -> None:
    """Make SQLAlchemy's transaction of the session take over its held one, if it has one.

    Called where a session begins SQLAlchemy's transaction, which adopts it (see ``adopt_held``).
    """
    found: Held | None = session.info.get(HELD)
    if found is not None and found.adopted is None:
        session.connection()  # begins SQLAlchemy's transaction: adopt_held hands it the connection


@event.listens_for(Session, "after_transaction_create")
def adopt_held(session: Session, transaction: SessionTransaction) -> None:
    """Give a session's new root transaction the connection of its held one.

    SQLAlchemy then treats it as a connection its transaction began on (``after_begin``
    listeners run), and sends its statements, COMMIT and ROLLBACK there.
    """
    found: Held | None = session.info.get(HELD)
    if found is None or found.adopted is not None or transaction.parent is not None:
        return
    connection = Connection(found.engine.sync_engine, connection=found.pooled)
    found.adopted = connection
    session.connection(bind_arguments={"bind": connection})


@event.listens_for(Session, "after_transaction_end")
def _release(session: Session, transaction: SessionTransaction) -> None:
    """Give the adopted connection back as the transaction that adopted it ends.

    SQLAlchemy closes only connections it took itself; this one it was handed. It runs in
    SQLAlchemy's greenlet (the commit, rollback or close that ended the transaction).
    """
    found: Held | None = session.info.get(HELD)
    if found is None or found.adopted is None or transaction.parent is not None:
        return
    del session.info[HELD]
    found.adopted.close()


def _end_unadopted(session: Session, *, invalidate: bool = False) -> None:
    """Roll back a held transaction that SQLAlchemy never adopted (in SQLAlchemy's greenlet)."""
    found: Held | None = session.info.get(HELD)
    if found is None or found.adopted is not None:
        return
    del session.info[HELD]
    pooled = found.pooled
    if invalidate:
        pooled.invalidate()
        return
    try:
        await_only(_finish(pooled.dbapi_connection, commit=False))
    except BaseException as exc:
        driver = pooled.driver_connection
        if driver is not None:
            driver.terminate()
        pooled.invalidate(exc if isinstance(exc, Exception) else None)
        raise
    pooled.close()
