"""The engine's pool: overflow connections wait as spares, and close once unused for a while."""

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app_db import create_engine, pool_stats
from app_db import pool as pool_module
from app_db.cluster import wal
from app_db.engine import dispose
from app_db.fastpath import run_borrowed
from app_db.pool import EnginePool
from app_db.turns import wait_recorders
from tests.conftest import settings


def counted(engine: AsyncEngine) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in ("connect", "close"):
        event.listen(engine.sync_engine.pool, name, lambda *_, name=name: counts.update((name,)))
    return counts


async def use_all(engine: AsyncEngine, how_many: int) -> set[int]:
    """Hold ``how_many`` connections at once, then give them all back; return their backends."""
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(engine.connect()) for _ in range(how_many)]
        return {await c.scalar(text("SELECT pg_backend_pid()")) for c in connections}


async def test_overflow_connections_wait_as_spares_at_the_defaults(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database))  # 10 + 5, spares kept 60 s
    counts = counted(engine)
    try:
        first = await use_all(engine, 15)
        stats = pool_stats(engine)
        assert (stats.idle, stats.in_use, stats.overflow) == (15, 0, 5)
        assert counts == {"connect": 15}  # nothing closed when the five extra came back

        again = await use_all(engine, 15)
        assert again == first  # the same 15 server processes: no connect, no close
        assert counts == {"connect": 15}

        # Fewer than the pool size at a time: the pool's own ten serve, the spares stay idle.
        for _ in range(20):
            await use_all(engine, 3)
        assert counts == {"connect": 15}
        assert pool_stats(engine).idle == 15
    finally:
        await dispose(engine)
    assert counts == {"connect": 15, "close": 15}  # dispose closes the spares too


async def test_spares_unused_for_the_idle_time_close(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database, database_pool_overflow_idle=0.3))
    counts = counted(engine)
    try:
        await use_all(engine, 15)
        await use_all(engine, 2)  # before the idle time: the spares stay
        assert counts == {"connect": 15}

        await asyncio.sleep(0.4)
        rows = await run_borrowed(engine, "SELECT 1 AS one", ())  # the pool's next use
        assert rows[0]["one"] == 1
        assert counts == {"connect": 15, "close": 5}
        stats = pool_stats(engine)
        assert (stats.idle, stats.in_use, stats.overflow) == (10, 0, 0)
    finally:
        await dispose(engine)


async def test_no_idle_time_closes_overflow_as_it_comes_back(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database, database_pool_overflow_idle=0))
    counts = counted(engine)
    try:
        await use_all(engine, 15)
        assert counts == {"connect": 15, "close": 5}
        assert pool_stats(engine).overflow == 0
    finally:
        await dispose(engine)


async def test_spares_never_lift_the_cap(empty_database: URL) -> None:
    engine = create_engine(
        settings(empty_database, database_pool_size=2, database_max_overflow=1),
        pool_timeout=0.3,
    )
    counts = counted(engine)
    try:
        await use_all(engine, 3)  # one spare now
        async with engine.connect(), engine.connect(), engine.connect():
            assert pool_stats(engine).in_use == 3
            with pytest.raises(sa_exc.TimeoutError):
                async with engine.connect():
                    pass
        assert counts == {"connect": 3}
    finally:
        await dispose(engine)


PID = "SELECT pg_backend_pid() AS pid"


async def borrowed_pid(engine: AsyncEngine) -> int:
    rows = await run_borrowed(engine, PID, ())
    return int(rows[0]["pid"])


def quiet_pool(engine: AsyncEngine) -> EnginePool:
    pool = engine.sync_engine.pool
    assert isinstance(pool, EnginePool)
    return pool


@pytest.fixture
def through_greenlet(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each checkout through SQLAlchemy's greenlet (``AsyncEngine.raw_connection``)."""
    checkouts: list[object] = []
    checkout = AsyncEngine.raw_connection

    async def counted_checkout(self: AsyncEngine) -> object:
        checkouts.append(self)
        return await checkout(self)

    monkeypatch.setattr(AsyncEngine, "raw_connection", counted_checkout)
    return checkouts


async def test_a_ready_connection_is_borrowed_without_sqlalchemys_greenlet(
    empty_database: URL, through_greenlet: list[object]
) -> None:
    engine = create_engine(settings(empty_database))
    try:
        assert quiet_pool(engine).checkout_quietly() is None  # nothing idle: it must connect
        first = await borrowed_pid(engine)
        assert len(through_greenlet) == 1

        assert {await borrowed_pid(engine) for _ in range(5)} == {first}
        assert len(through_greenlet) == 1  # the idle connection, handed out as a plain call

        # Called outside any greenlet, a checkout that needed I/O would fail: this one has none.
        pooled = quiet_pool(engine).checkout_quietly()
        assert pooled is not None
        assert pooled.driver_connection is not None
        assert pooled.driver_connection.get_server_pid() == first
        pooled.close()
    finally:
        await dispose(engine)


@pytest.mark.parametrize(
    "setting",
    [
        {"database_pool_pre_ping": True},  # a ping is a round trip
        {"database_pool_recycle": 1},  # due for recycling (within a second counts)
    ],
)
async def test_a_checkout_that_may_need_the_server_goes_through_sqlalchemy(
    empty_database: URL, setting: dict[str, object]
) -> None:
    engine = create_engine(settings(empty_database, **setting))
    try:
        first = await borrowed_pid(engine)
        assert quiet_pool(engine).checkout_quietly() is None
        assert await borrowed_pid(engine) == first  # not renewed: it was only due to be
    finally:
        await dispose(engine)


async def test_an_apps_checkout_listener_still_runs_on_every_borrow(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database))
    seen: list[object] = []
    try:
        await borrowed_pid(engine)
        event.listen(engine.sync_engine.pool, "checkout", lambda *args: seen.append(args))
        assert quiet_pool(engine).checkout_quietly() is None
        await borrowed_pid(engine)
        await borrowed_pid(engine)
        assert len(seen) == 2
    finally:
        await dispose(engine)


async def test_an_invalidated_connection_is_renewed_through_sqlalchemy(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database))
    try:
        first = await borrowed_pid(engine)
        pooled = await engine.raw_connection()
        pooled.invalidate(soft=True)  # renewed on its next checkout
        pooled.close()
        assert quiet_pool(engine).checkout_quietly() is None
        assert await borrowed_pid(engine) != first
        renewed = quiet_pool(engine).checkout_quietly()
        assert renewed is not None  # the new one is ready
        renewed.close()
    finally:
        await dispose(engine)


async def test_a_sqlalchemy_whose_checks_are_not_mirrored_checks_out_as_before(
    empty_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(settings(empty_database))
    try:
        first = await borrowed_pid(engine)
        monkeypatch.setattr(pool_module, "CHECKS_MIRRORED", False)
        assert quiet_pool(engine).checkout_quietly() is None
        assert await borrowed_pid(engine) == first
    finally:
        await dispose(engine)


async def test_each_borrow_records_one_pool_wait(empty_database: URL) -> None:
    engine = create_engine(settings(empty_database, database_pool_recycle=1))
    waits: list[str] = []

    def record(_: float, queue: str) -> None:
        waits.append(queue)

    wait_recorders.append(record)
    try:
        await borrowed_pid(engine)  # connects
        await borrowed_pid(engine)  # due for recycling: found not ready, then recycled
        assert waits.count("pool") == 2
    finally:
        wait_recorders.remove(record)
        await dispose(engine)


async def test_a_connection_whose_server_went_away_is_replaced_not_handed_out(
    empty_database: URL,
) -> None:
    engine = create_engine(settings(empty_database))
    admin = create_async_engine(empty_database, poolclass=NullPool)
    try:
        pooled = await engine.raw_connection()
        driver = pooled.driver_connection
        assert driver is not None
        first = driver.get_server_pid()
        pooled.close()  # idle in the pool now
        closed = asyncio.Event()
        driver.add_termination_listener(lambda _: closed.set())
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        async with asyncio.timeout(5):
            await closed.wait()  # asyncpg saw the server close the socket
        assert driver.is_closed()

        assert quiet_pool(engine).checkout_quietly() is None
        assert await borrowed_pid(engine) != first  # replaced through SQLAlchemy, no error
    finally:
        await admin.dispose()
        await dispose(engine)


async def test_a_wal_position_read_borrows_as_the_fast_path_does(
    empty_database: URL, through_greenlet: list[object]
) -> None:
    engine = create_engine(settings(empty_database))
    try:
        positions = [await wal.read(engine, wal.PRIMARY_POSITION_SQL, None) for _ in range(3)]
        assert all(isinstance(position, int) for position in positions)
        assert len(through_greenlet) == 1  # the first connects; the others take it quietly
        assert pool_stats(engine).in_use == 0
    finally:
        await dispose(engine)
