"""A readiness probe: one ``SELECT 1`` under a short timeout, with the pool's statistics."""

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool


@dataclass(frozen=True)
class Health:
    """The probe's answer; ``ok`` is false when the database did not answer in time."""

    ok: bool
    latency_ms: float
    pool_size: int | None
    checked_out: int | None
    overflow: int | None
    error: str | None = None


async def check(bind: AsyncEngine | AsyncConnection, *, timeout: float = 2.0) -> Health:  # noqa: ASYNC109
    """Run ``SELECT 1`` within ``timeout`` seconds and report how the pool is doing."""
    started = time.perf_counter()
    error = None
    try:
        async with asyncio.timeout(timeout):
            if isinstance(bind, AsyncEngine):
                async with bind.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            else:
                await bind.execute(text("SELECT 1"))
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
    except Exception as exc:
        error = type(exc).__name__
    pool = bind.sync_engine.pool if isinstance(bind, AsyncEngine) else bind.engine.sync_engine.pool
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    if not isinstance(pool, QueuePool):
        return Health(error is None, latency_ms, None, None, None, error)
    return Health(error is None, latency_ms, pool.size(), pool.checkedout(), pool.overflow(), error)
