"""The async engine, its sessionmaker and the unit-of-work context manager."""

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.asyncio import AsyncSession as SQLAlchemyAsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import driver_transaction, ownership
from app_db.cluster import replica, routing
from app_db.cluster.connect import Connector
from app_db.cluster.fencing import Fence
from app_db.coalesce import COALESCE
from app_db.errors import raise_translated, translated_errors
from app_db.fastpath import DRIVER_READS, READ_TIMEOUT, has_pending
from app_db.lazy_session import LazyAsyncSession, built
from app_db.observe import otel, slow, stats
from app_db.observe.slow import SLOW_MS
from app_db.pool import EnginePool, refuse_closed_connection
from app_db.settings import Settings, load_settings
from app_db.turns import TURN_SLOTS


def create_engine(settings: Settings | None = None, **engine_options: Any) -> AsyncEngine:
    """Build an ``AsyncEngine`` from settings (read from the environment when not given).

    Server settings (``application_name``, ``statement_timeout``) and SSL reach asyncpg through
    ``connect_args``. Keyword arguments override the pool options taken from the settings.
    Nothing connects until the engine is first used. A new connection goes to the first host
    of the URL that answers in time as asked, and must pass the fence (see ``app_db.cluster``).
    With ``DATABASE_READ_URL``, a replica engine is built beside it (see ``read_engine``).
    """
    settings = settings if settings is not None else load_settings()
    fence = Fence()
    engine = _build(settings, engine_options, _connector(settings, fence, "read-write"))
    read_settings = settings.read_settings()
    if read_settings is not None:
        max_lag = settings.database_read_max_lag
        built = _build(
            read_settings,
            engine_options,
            _connector(read_settings, fence, "any"),
            read_timeout=settings.database_read_timeout,
        )
        replica.register(
            engine,
            replica.Replica(
                built,
                retry_interval=settings.database_read_retry_interval,
                read_timeout=settings.database_read_timeout,
                max_lag=None if max_lag is None else max_lag.total_seconds(),
            ),
        )
    return engine


def _connector(settings: Settings, fence: Fence, default_target: str) -> Connector:
    return Connector(
        fence, default_target=default_target, tcp_user_timeout=settings.database_tcp_user_timeout
    )


def _build(
    settings: Settings,
    engine_options: dict[str, Any],
    connector: Connector,
    *,
    read_timeout: float | None = None,
) -> AsyncEngine:
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout,
        "pool_recycle": settings.database_pool_recycle,
        "pool_pre_ping": settings.database_pool_pre_ping,
        "echo": settings.database_echo,
        "hide_parameters": True,
        "connect_args": settings.connect_args(),
        # Behind PgBouncer, reads go through SQLAlchemy inside a transaction, never as a
        # bare prepared statement that PgBouncer could hand to another server connection.
        "execution_options": {
            DRIVER_READS: not settings.database_pgbouncer,
            COALESCE: 0 if settings.database_pgbouncer else settings.database_coalesce_max_batch,
        },
    }
    if settings.database_slow_statement_ms is not None:
        options["execution_options"][SLOW_MS] = settings.database_slow_statement_ms
    if read_timeout is not None:
        options["execution_options"][READ_TIMEOUT] = read_timeout
    options.update(engine_options)
    options.setdefault("poolclass", EnginePool)
    if options.get("poolclass") is NullPool:
        for queue_only in ("pool_size", "max_overflow", "pool_timeout"):
            options.pop(queue_only, None)
    elif options["max_overflow"] >= 0:  # a cap on connections: borrowers queue for them fairly
        cap = options["pool_size"] + options["max_overflow"]
        options["execution_options"] = {**options["execution_options"], TURN_SLOTS: cap}
    engine = create_async_engine(settings.sqlalchemy_url(), **options)
    connector.install(engine)
    pool = engine.sync_engine.pool
    if isinstance(pool, EnginePool):
        pool.overflow_idle = settings.database_pool_overflow_idle
    event.listen(pool, "checkout", refuse_closed_connection)
    event.listen(engine.sync_engine, "handle_error", _drop_on_client_timeout)
    stats.watch(pool)
    url = engine.url
    listed = url.query.get("host")
    where = (
        listed[0] if isinstance(listed, tuple) else f"{url.host or 'localhost'}:{url.port or 5432}"
    )
    otel.register(engine, f"{where}/{url.database}")
    if settings.database_slow_statement_ms is not None:
        slow.watch(engine)
    return engine


def read_engine(engine: AsyncEngine) -> AsyncEngine | None:
    """Return the read-replica engine that ``create_engine`` made beside ``engine``, if any."""
    found = replica.replica_of(engine)
    return None if found is None else found.engine


async def dispose(engine: AsyncEngine) -> None:
    """Close the pooled connections of ``engine`` and of its read replica engine."""
    found = replica.unregister(engine)
    if found is not None:
        await found.close()
        await found.engine.dispose()
    await engine.dispose()


def _drop_on_client_timeout(context: ExceptionContext) -> None:
    """Drop a connection whose server gave no answer within the command timeout.

    asyncpg raises ``TimeoutError`` and sends the server a cancel request, which the
    connection's next use would wait for. Counted as a disconnect, the connection is closed
    instead, the rollback costs no round trip, and the pool replaces its older connections.
    """
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True
        connection = context.connection
        if connection is not None and not connection.invalidated and not connection.closed:
            driver = connection.connection.driver_connection
            if driver is not None:
                driver.terminate()  # else the invalidation waits 2 s for a graceful close


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a factory of SQLModel ``AsyncSession`` objects that keep attributes after commit.

    Their sessions are app_db's: SQLModel's, built when first used (``LazyAsyncSession``), and
    able to begin a transaction on the driver for app_db's own writes, and hand it to
    SQLAlchemy if needed (``driver_transaction.Session``).
    """
    return async_sessionmaker(
        engine,
        class_=LazyAsyncSession,
        sync_session_class=driver_transaction.Session,
        expire_on_commit=False,
    )


def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    owner: uuid.UUID | None = None,
    primary: bool = False,
    after: str | None = None,
) -> "Transaction":
    """Enter a session inside a transaction: commit when the block succeeds, roll back if not.

    With ``owner``, the transaction is scoped to that user's rows (see ``app_db.ownership``):
    PostgreSQL's row-level security then shows the customers functions, and any SQL run on the
    session, only that owner's customers. Without it, it sees every row.

    With a read replica, ``primary=True`` sends every read of the block to the primary, and
    ``after`` (a position from ``commit_position`` of an earlier transaction) sends a read to
    the replica only if it has replayed that position, else to the primary, without waiting.

    Expected database failures (pool timeout, lost connection, statement timeout, known
    constraints) leave it as app_db's typed errors; what the block's own code raises (an
    ``asyncio.timeout``, a file or HTTP error) leaves it unchanged, even an ``OSError`` (see
    ``errors.raised_by_driver``). The transaction begins with the session's first statement.
    A block that never starts it (only reads that borrowed a pooled connection, see
    ``app_db.fastpath``) ends without a COMMIT, and costs no round trip at all.
    """
    return Transaction(sessionmaker, owner=owner, primary=primary, after=after)


class Transaction:
    """The context manager ``transaction()`` returns: ``async with`` it, once.

    A class rather than ``contextlib.asynccontextmanager``, whose generator machinery cost
    about 3 µs of the 9 µs that a block entered and left costs, on every request.
    """

    __slots__ = ("_after", "_maker", "_owner", "_primary", "_session")

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        owner: uuid.UUID | None,
        primary: bool,
        after: str | None,
    ) -> None:
        self._maker = sessionmaker
        self._owner = owner
        self._primary = primary
        self._after = after
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        if self._session is not None:
            raise RuntimeError("a transaction() block can be entered only once")
        session = self._session = self._maker()
        if self._primary or self._after is not None:
            routing.route(session, primary=self._primary, after=self._after)
        if self._owner is not None:
            with translated_errors():
                try:
                    await ownership.scope(session, self._owner)
                except BaseException:
                    await _abandon(session)
                    raise
        return session

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> None:
        session = self._session
        assert session is not None
        if built(session) is None:  # never used but to borrow: nothing began, nothing to close
            if error is not None:
                raise_translated(error)
            return
        held = driver_transaction.held(session)
        if held is not None and error is None and has_pending(session):
            # ORM changes to flush in it (a change begins SQLAlchemy's transaction, which adopts
            # the held one: this is the safety net): adopt it, and commit them with it
            await greenlet_spawn(driver_transaction.adopt, session.sync_session)
            held = None
        if error is not None:
            with translated_errors():
                if held is None:
                    await _abandon(session)
                else:
                    await _end_held(session, held, commit=False)
            raise_translated(error)
            return
        if held is not None or session.in_transaction() or has_pending(session):
            with translated_errors():
                if held is not None:  # SQLAlchemy never began one: commit it on the driver
                    await _end_held(session, held, commit=True)
                else:
                    if isinstance(session.bind, AsyncConnection):
                        try:
                            await session.flush()
                            await ownership.unset_in_outer_transaction(session)
                        except BaseException:
                            await session.close()
                            raise
                    await _commit_and_close(session)
            routing.committed(session)


async def _end_held(
    session: AsyncSession,
    held: driver_transaction.Held,
    commit: bool,  # noqa: FBT001
) -> None:
    """Commit or roll back the session's held transaction, then close the session as after
    SQLAlchemy's (it has no transaction of SQLAlchemy's: no I/O; nothing to do when empty)."""
    try:
        await driver_transaction.end(session, held, commit=commit)
    finally:
        if session.sync_session.identity_map:
            session.sync_session.close()


async def _abandon(session: AsyncSession) -> None:
    """Roll back what the session began, then close it, even if the rollback fails."""
    try:
        if session.in_transaction():
            await session.rollback()
    finally:
        await session.close()


async def _commit_and_close(session: AsyncSession) -> None:
    """Commit, then close even if the commit failed: in one trip into SQLAlchemy's greenlet.

    ``AsyncSession.commit`` and ``close`` each enter the greenlet (about 9 µs a trip); a
    session class with a ``commit`` or ``close`` of its own gets both called as they are.
    """
    kind = type(session)
    plain = SQLAlchemyAsyncSession
    if kind.commit is not plain.commit or kind.close is not plain.close:
        try:
            await session.commit()
        finally:
            await session.close()
        return
    await greenlet_spawn(_commit_then_close, session.sync_session)


def _commit_then_close(session: Session) -> None:
    try:
        session.commit()
    finally:
        session.close()
