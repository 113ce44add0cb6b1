"""A readiness probe: one ``SELECT 1`` under a short timeout, with the pool's numbers.

With a read replica (``DATABASE_READ_URL``), the replica is probed too, its lag measured, and
both reported on their own: the primary alone decides ``ok``, since reads go to it while the
replica is down or lags.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app_db.cluster.replica import ON_REPLICA, replica_of
from app_db.observe.stats import PoolStats, pool_stats


@dataclass(frozen=True)
class ReplicaHealth:
    """The replica's answer; ``reads_on_primary`` is true while reads go to the primary.

    ``route`` says why (see ``PoolStats.replica_route``), ``lag_s`` is the most the replica
    lagged at a measurement made with this probe.
    """

    ok: bool
    latency_ms: float
    reads_on_primary: bool
    fallbacks: int
    error: str | None = None
    route: str = "replica"
    lag_s: float | None = None


@dataclass(frozen=True)
class Health:
    """The probe's answer; ``ok`` is false when the database did not answer in time."""

    ok: bool
    latency_ms: float
    pool: PoolStats
    error: str | None = None
    replica: ReplicaHealth | None = None


async def check(bind: AsyncEngine | AsyncConnection, *, timeout: float = 2.0) -> Health:  # noqa: ASYNC109
    """Run ``SELECT 1`` within ``timeout`` seconds and report how the pool is doing."""
    latency_ms, error = await _probe(bind, timeout)
    engine = bind if isinstance(bind, AsyncEngine) else bind.engine
    replica = replica_of(engine)
    replica_health = None
    if replica is not None:
        replica_ms, replica_error = await _probe(replica.engine, timeout)
        if replica_error is None and error is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await replica.measure(engine)
        route = replica.route()
        replica_health = ReplicaHealth(
            ok=replica_error is None,
            latency_ms=replica_ms,
            reads_on_primary=route != ON_REPLICA,
            fallbacks=replica.fallbacks,
            error=replica_error,
            route=route,
            lag_s=replica.lag.reported(),
        )
    return Health(error is None, latency_ms, pool_stats(engine), error, replica_health)


async def _probe(bind: AsyncEngine | AsyncConnection, timeout: float) -> tuple[float, str | None]:  # noqa: ASYNC109
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
    return round((time.perf_counter() - started) * 1000, 2), error
