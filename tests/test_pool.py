"""The engine's pool: overflow connections wait as spares, and close once unused for a while."""

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db import create_engine, pool_stats
from app_db.engine import dispose
from app_db.fastpath import run_borrowed
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
