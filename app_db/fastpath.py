"""Hot reads in one round trip on the session's own connection, without ORM query overhead.

The statement goes to asyncpg directly, as a prepared statement from the driver's cache,
unless the engine turned this off (``app_db_driver_reads``, off behind PgBouncer); then the
same SQL runs through SQLAlchemy. Rows become ORM instances without the ORM's loading
machinery (see ``load``). Pending ORM changes are flushed first, as autoflush would.

When SQLAlchemy has not yet sent ``BEGIN`` on the connection (it does so lazily, with its
first statement), a statement sent here runs on its own, in autocommit, like any single
statement: it costs no BEGIN round trip and it sees all committed data.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import driver_transaction, session_connection
from app_db.cluster.replica import Replica
from app_db.cluster.routing import replica_for
from app_db.errors import DISCONNECTS as _DISCONNECTS
from app_db.errors import AppDBError, DatabaseUnavailableError
from app_db.instances import column_names, detached, detached_all, primary_key_of
from app_db.lazy_session import bind_of, built, info_of
from app_db.observe import slow
from app_db.ownership import OWNER, SET_SQL
from app_db.pool import borrow, drop, give_back
from app_db.rows import Row, mapped_class
from app_db.turns import fair_turn

_CUT: tuple[type[BaseException], ...] = (*_DISCONNECTS, asyncio.CancelledError)
"""A statement of the session's transaction that raised these may or may not have run."""
DRIVER_READS = "app_db_driver_reads"
READ_TIMEOUT = "app_db_read_timeout"
"""The replica engine's execution option: seconds a borrowed read may take, all in."""

M = TypeVar("M", bound=SQLModel)
T = TypeVar("T")


async def fetch(
    db: AsyncSession,
    sql: str,
    *args: object,
    read_only: bool = False,
    record_class: type[asyncpg.Record] | None = None,
) -> Sequence[Row]:
    """Run one statement for the session and return its rows.

    It runs on the session's connection. Only when the session has nothing to flush, holds no
    connection yet and is bound to an engine does it borrow a pooled connection of that engine
    for this one statement instead: it sees what the first statement of the session's
    transaction would see under READ COMMITTED, without starting that transaction. A
    ``read_only`` statement borrowed this way goes to the read replica when the session's
    route allows it (see ``app_db.cluster.routing``). With ``record_class`` (see
    ``app_db.rows``) the rows are of that class, or of its twin through SQLAlchemy.
    """
    if has_pending(db):
        await db.flush()
    engine = borrowable(db)
    if engine is not None:
        replica = replica_for(db, engine) if read_only else None
        return await on_engines(
            engine, lambda chosen: run_borrowed(chosen, sql, args, record_class), replica
        )
    owner = info_of(db).get(OWNER)
    engine = borrowable(db, scoped=True) if read_only and owner is not None else None
    if engine is not None:
        replica = replica_for(db, engine)
        return await on_engines(
            engine,
            lambda chosen: run_borrowed(chosen, sql, args, record_class, owner=owner),
            replica,
        )
    return await fetch_in_transaction(db, sql, *args, record_class=record_class)


async def fetch_in_transaction(
    db: AsyncSession, sql: str, *args: object, record_class: type[asyncpg.Record] | None = None
) -> Sequence[Row]:
    """Run one statement on the session's own connection, in its transaction, and return rows.

    The transaction begins here if it has not: on the driver, held by an app_db session until
    SQLAlchemy needs it (``app_db.driver_transaction``), or else SQLAlchemy's ``BEGIN``, with
    the owner's scope when the session has one. The statement itself goes to asyncpg
    directly, as ``fetch``'s do. For writes: what it writes commits or rolls back with the
    session's transaction. Pending ORM changes are not flushed first: flush them if the
    statement depends on them.
    """
    held = driver_transaction.held(db)
    if held is None:
        engine = holdable(db)
        if engine is not None:
            held = await driver_transaction.begin(db, engine)
    if held is not None:
        return await _on_held(db, held, sql, args, record_class)
    sync = session_connection.quietly(db)
    if sync is None:
        sync = (await db.connection()).sync_connection
        assert sync is not None
    options = sync.get_execution_options()
    if not options.get(DRIVER_READS, True):
        return await _through_sqlalchemy(await db.connection(), sql, args, record_class)
    pooled = sync.connection if not sync.invalidated else await greenlet_spawn(_revalidated, sync)
    try:
        if not await driver_transaction.begin_on_adapter(pooled.dbapi_connection):
            return await _through_sqlalchemy(await db.connection(), sql, args, record_class)
        driver = pooled.driver_connection
        return await _on_driver(driver, sql, args, slow.threshold(options), record_class)
    except _CUT as exc:  # invalidated, as SQLAlchemy's own statement's would be
        await greenlet_spawn(sync.invalidate, exc if isinstance(exc, Exception) else None)
        raise


def holdable(db: AsyncSession) -> AsyncEngine | None:
    """Return the engine the session may hold a transaction on (see ``driver_transaction``)."""
    bind = db.bind
    sync = db.sync_session
    if (
        isinstance(sync, driver_transaction.Session)
        and isinstance(bind, AsyncEngine)
        and sync.get_transaction() is None
        and not has_pending(db)
        and bind.sync_engine.get_execution_options().get(DRIVER_READS, True)
        and session_connection.begins_quietly(db, bind, autobegin=True)
    ):
        return bind
    return None


async def _on_held(
    db: AsyncSession,
    held: driver_transaction.Held,
    sql: str,
    args: tuple[object, ...],
    record_class: type[asyncpg.Record] | None,
) -> Sequence[Row]:
    options = held.engine.sync_engine.get_execution_options()
    driver = held.pooled.driver_connection
    try:
        return await _on_driver(driver, sql, args, slow.threshold(options), record_class)
    except _CUT as exc:  # lost, or cut short mid-statement
        await driver_transaction.lost(db, exc)
        raise


def _revalidated(connection: Connection) -> PoolProxiedConnection:
    """Return the pooled connection of an invalidated one: SQLAlchemy checks out a new one."""
    return connection.connection


def borrowable(db: AsyncSession, *, scoped: bool = False) -> AsyncEngine | None:
    """Return the engine a read may borrow a connection of, or ``None`` to use the session's.

    That is when the session holds no connection yet, is bound to an engine, reads at READ
    COMMITTED (flush pending changes first: they need the session's connection), and is not
    scoped to an owner (its reads must see what its transaction's scope lets it see). With
    ``scoped``, a session scoped to an owner may borrow too: for a read-only statement that
    runs in a read-only transaction of its own, under the same scope (see ``run_borrowed``).
    """
    bind = bind_of(db)
    if (
        isinstance(bind, AsyncEngine)
        and (scoped or OWNER not in info_of(db))
        and not _holds_connection(db)
        and _read_committed(bind)
    ):
        return bind
    return None


async def on_engines(
    primary: AsyncEngine, read: Callable[[AsyncEngine], Awaitable[T]], replica: Replica | None
) -> T:
    """Run a borrowed read on ``replica`` if given, else (or when it fails) on the primary.

    The replica has ``DATABASE_READ_TIMEOUT`` seconds to answer, its pool's queue included.
    """
    if replica is not None:
        try:
            async with asyncio.timeout(replica.read_timeout):
                result = await read(replica.engine)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not isinstance(exc, AppDBError):
                exc = DatabaseUnavailableError(replica.timeout_message())
            if not replica.fall_back(exc):
                raise
        else:
            replica.answered()
            return result
    return await read(primary)


async def run_borrowed(
    engine: AsyncEngine,
    sql: str,
    args: tuple[object, ...],
    record_class: type[asyncpg.Record] | None = None,
    *,
    owner: uuid.UUID | None = None,
) -> Sequence[Row]:
    """Run one statement on a connection borrowed from ``engine``'s pool for it alone.

    On a replica engine (``READ_TIMEOUT``), a read that runs out of time drops its connection.
    With ``owner``, the statement runs in a read-only transaction scoped to that owner's rows
    (``app_db.ownership``): one round trip begins it and sets the scope, one reads, one ends
    it. A connection whose scoped read failed is dropped, never given back mid-transaction.
    """
    options = engine.sync_engine.get_execution_options()
    if not options.get(DRIVER_READS, True):
        # SQLAlchemy begins a transaction: commit it, or what the statement wrote (validate's
        # touch) would be rolled back when the connection goes back.
        async with engine.begin() as borrowed:
            if owner is not None:
                await borrowed.exec_driver_sql(SET_SQL, (str(owner),))
            return await _through_sqlalchemy(borrowed, sql, args, record_class)
    timeout = options.get(READ_TIMEOUT)
    slow_after = slow.threshold(options)
    if timeout is None:
        return await _borrowed(engine, sql, args, slow_after, record_class, owner=owner)
    async with asyncio.timeout(timeout):
        return await _borrowed(
            engine, sql, args, slow_after, record_class, drop_if_cut=True, owner=owner
        )


def engine_of(db: AsyncSession) -> AsyncEngine:
    """Return the engine of the session's bind, an engine or a connection of one."""
    bind = bind_of(db)
    if isinstance(bind, AsyncEngine):
        return bind
    if isinstance(bind, AsyncConnection):
        return bind.engine
    raise TypeError("the session must be bound to an AsyncEngine or an AsyncConnection")


async def run_alone(engine: AsyncEngine, sql: str, *args: object) -> Sequence[Row]:
    """Run one statement in a transaction of its own, committed when it returns.

    It borrows a pooled connection of ``engine``, so what it writes stays whatever becomes of
    the caller's transaction. It is not retried: it may write something that is not idempotent.
    """
    options = engine.sync_engine.get_execution_options()
    if not options.get(DRIVER_READS, True):
        async with engine.begin() as connection:
            return await _through_sqlalchemy(connection, sql, args)
    return await _borrowed(engine, sql, args, slow.threshold(options), retry=False)


async def _borrowed(
    engine: AsyncEngine,
    sql: str,
    args: tuple[object, ...],
    slow_after: float | None,
    record_class: type[asyncpg.Record] | None = None,
    *,
    retry: bool = True,
    drop_if_cut: bool = False,
    owner: uuid.UUID | None = None,
) -> Sequence[Row]:
    """Run a statement on a pooled connection, outside any transaction (it commits alone).

    With ``retry``, a connection found dead is replaced and the statement tried again: only
    idempotent statements may (lookups, and validate's touch, which writes now()), so that one
    retry on a fresh connection hides a connection the server dropped while idle. A server that
    did not answer in time (``TimeoutError``) is not asked twice.
    """
    for attempt in (1, 2) if retry else (2,):
        async with fair_turn(engine):
            pooled = await borrow(engine)
            try:
                driver = pooled.driver_connection
                if owner is None:
                    rows = await _on_driver(driver, sql, args, slow_after, record_class)
                else:
                    rows = await _in_scope(
                        driver, owner, sql, args, slow_after, record_class=record_class
                    )
            except _DISCONNECTS as exc:
                if isinstance(exc, TimeoutError):  # the server hangs: no graceful close
                    await drop(pooled, exc)
                    raise
                await greenlet_spawn(pooled.invalidate, exc)
                if attempt == 2:
                    raise
                continue
            except asyncio.CancelledError as exc:
                if drop_if_cut or owner is not None:  # a hung server, or a transaction begun
                    await drop(pooled, exc)
                else:
                    await give_back(engine, pooled)
                raise
            except BaseException as exc:
                if owner is not None:  # the scoped transaction may still be open: drop it
                    await drop(pooled, exc)
                else:
                    await give_back(engine, pooled)
                raise
            await give_back(engine, pooled)
            return rows
    raise AssertionError("unreachable")


async def _on_driver(
    driver: Any,
    sql: str,
    args: tuple[object, ...],
    slow_after: float | None = None,
    record_class: type[asyncpg.Record] | None = None,
) -> Sequence[Row]:
    connection: asyncpg.Connection = driver
    # On cancellation asyncpg sends the server a cancel request, and the connection's next
    # statement waits for it to finish: the connection can go back to the pool as it is.
    if slow_after is None:
        rows: Sequence[Row] = await connection.fetch(sql, *args, record_class=record_class)
        return rows
    started = time.perf_counter()
    rows = await connection.fetch(sql, *args, record_class=record_class)
    slow.report(time.perf_counter() - started, slow_after, sql)
    return rows


_BEGIN_IN_SCOPE = "BEGIN READ ONLY; " + SET_SQL.replace("$1", "'{owner}'")


async def _in_scope(
    driver: Any,
    owner: uuid.UUID,
    sql: str,
    args: tuple[object, ...],
    slow_after: float | None,
    *,
    record_class: type[asyncpg.Record] | None,
) -> Sequence[Row]:
    """Run a read in a read-only transaction scoped to ``owner``, then end the transaction."""
    connection: asyncpg.Connection = driver
    # One round trip for both: a simple query may hold several statements. The owner's text
    # is a UUID's, parsed again here: hex digits and dashes only.
    await connection.execute(_BEGIN_IN_SCOPE.format(owner=uuid.UUID(str(owner))))
    rows = await _on_driver(connection, sql, args, slow_after, record_class)
    await connection.execute("COMMIT")
    return rows


async def _through_sqlalchemy(
    connection: AsyncConnection,
    sql: str,
    args: tuple[object, ...],
    record_class: type[asyncpg.Record] | None = None,
) -> Sequence[Row]:
    """Run the statement through SQLAlchemy; return mappings, or ``record_class``'s twins."""
    result = await connection.exec_driver_sql(sql, args)
    if not result.returns_rows:
        return []
    mapped = None if record_class is None else mapped_class(record_class)
    if mapped is None:
        return list(result.mappings())
    return [mapped.of(values) for values in result.mappings()]


def has_pending(db: AsyncSession) -> bool:
    """Whether the session holds ORM changes it has not flushed (new, changed or deleted).

    The answer of ``db.new or db.dirty or db.deleted``, asked before every read: those build a
    set each (0.9 µs for the three), where the test SQLAlchemy's flush makes costs 0.1 µs.
    """
    sync = built(db)
    return sync is not None and not sync._is_clean()


def _holds_connection(db: AsyncSession) -> bool:
    sync = built(db)
    if sync is None:
        return False
    if driver_transaction.held(db) is not None:
        return True
    transaction = sync.get_transaction()  # the root transaction, if one began
    return transaction is not None and bool(transaction.connections)


def _read_committed(engine: AsyncEngine) -> bool:
    level = engine.sync_engine.get_execution_options().get("isolation_level")
    return level in (None, "READ COMMITTED", "AUTOCOMMIT")


def reads_from_replica(db: AsyncSession) -> bool:
    """Return whether a ``read_only`` statement of this session would go to a read replica now."""
    if has_pending(db):
        return False
    engine = borrowable(db)
    return engine is not None and replica_for(db, engine) is not None


async def fetchrow(
    db: AsyncSession, sql: str, *args: object, read_only: bool = False
) -> Row | None:
    """Run one statement as ``fetch`` does and return its first row, if any."""
    rows = await fetch(db, sql, *args, read_only=read_only)
    return rows[0] if rows else None


def load(db: AsyncSession, model: type[M], row: Row) -> M:
    """Return an instance for a row: the session's own when it holds one, else a detached one.

    The session's instance gets the row's values as its committed state, as
    ``populate_existing`` would. A new instance is built without validation (the row comes
    from our own schema) in about a microsecond: it is persistent but detached, so reading it
    costs nothing more, and ``db.add(instance)`` makes later changes to it flush as UPDATEs.
    A row may hold more than the model's columns; only the columns are read.
    """
    return load_values(db, model, {name: row[name] for name in column_names(model)})


def load_many(db: AsyncSession, model: type[M], rows: Sequence[Row]) -> list[M]:
    """Return instances for many rows (mappings of column name to value), as ``load`` does."""
    values = _column_values(column_names(model), rows)
    sync = built(db)
    if sync is not None and sync.identity_map:  # some may be the session's own: look each one up
        return [load_values(db, model, one) for one in values]
    return detached_all(model, values)


def _column_values(columns: tuple[str, ...], rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Return a dict of the columns' values for each row, in order (a list: a generator's
    resumptions cost 15 µs more for a page of 51)."""
    if rows and tuple(rows[0].keys()) == columns:  # exactly the columns: pair them up
        return [dict(zip(columns, row.values(), strict=True)) for row in rows]
    return [{name: row[name] for name in columns} for row in rows]


def load_values(db: AsyncSession, model: type[M], values: dict[str, Any]) -> M:
    """Return an instance for exactly the model's column values, as ``load`` does.

    A new instance takes ``values`` as its ``__dict__``: the caller hands the dict over.
    """
    sync = built(db)
    identity_map = None if sync is None else sync.identity_map
    if identity_map:
        key = (model, tuple([values[name] for name in primary_key_of(model)]), None)
        existing: M | None = identity_map.get(key)
        if existing is not None:
            for name, value in values.items():
                set_committed_value(existing, name, value)
            return existing
    return detached(model, values)
