"""The pool's numbers as plain values: ``pool_stats(engine)``, for ``/healthz``, ``app-db check``
and the metrics.

The counters live on the pool (``app_db.pool.EnginePool``, the pool ``create_engine`` builds),
and carry over when ``engine.dispose()`` replaces the pool.
"""

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from app_db.cluster.replica import replica_of
from app_db.pool import Counters
from app_db.turns import TURN_SLOTS, turn_timeouts, waiting


def watch(pool: Pool) -> None:
    """Count the connections the pool invalidates (dropped by the server, failed pings)."""
    counters = getattr(pool, "counters", None)
    if counters is not None:
        count = functools.partial(_count_invalidated, counters)
        event.listen(pool, "invalidate", count)
        event.listen(pool, "soft_invalidate", count)


def _count_invalidated(counters: Counters, *_: object) -> None:
    counters.invalidated += 1


@dataclass(frozen=True)
class PoolStats:
    """One engine's pool, now. ``None`` where the pool has no queue (``NullPool``)."""

    size: int | None
    """Connections the pool keeps open (``DATABASE_POOL_SIZE``)."""
    max_overflow: int | None
    """Connections it may open beyond that (``DATABASE_MAX_OVERFLOW``)."""
    in_use: int | None
    """Connections checked out now."""
    idle: int | None
    """Connections open and waiting in the pool."""
    overflow: int | None
    """Connections open now beyond ``size``."""
    waiting: int
    """Tasks waiting for their turn at a connection (first come, first served)."""
    timeouts: int
    """Checkouts that gave up after ``DATABASE_POOL_TIMEOUT`` (``PoolTimeoutError``)."""
    invalidated: int
    """Connections found dead and replaced."""
    replica_fallbacks: int
    """Reads that went to the primary because the read replica failed."""
    replica_reads: int = 0
    """Reads the read replica served."""
    replica_route: str | None = None
    """Where replica reads go now: ``replica``; ``lagging`` (over ``DATABASE_READ_MAX_LAG``) or
    ``down`` (until ``DATABASE_READ_RETRY_INTERVAL`` runs out), both the primary; ``None``
    without a replica."""
    replica_lag_s: float | None = None
    """The most the replica lagged at its last measurement, in seconds (``None``: no replica, or
    no measurement yet)."""


def pool_stats(engine: AsyncEngine) -> PoolStats:
    """Return the numbers of ``engine``'s pool: in use, idle, overflow, waiting, and counters."""
    pool = engine.sync_engine.pool
    counters = getattr(pool, "counters", None) or Counters()
    replica = replica_of(engine)
    about_replica: dict[str, Any] = {"replica_fallbacks": 0}
    if replica is not None:
        about_replica = {
            "replica_fallbacks": replica.fallbacks,
            "replica_reads": replica.reads,
            "replica_route": replica.route(),
            "replica_lag_s": replica.lag.reported(),
        }
    waiting_now = waiting(engine)
    timeouts = counters.timeouts + turn_timeouts(engine)
    if not isinstance(pool, QueuePool):
        return PoolStats(
            None, None, None, None, None, waiting_now, timeouts,
            counters.invalidated, **about_replica,
        )  # fmt: skip
    return PoolStats(
        size=pool.size(),
        max_overflow=_max_overflow(engine, pool),
        in_use=pool.checkedout(),
        idle=pool.checkedin(),
        overflow=max(pool.overflow(), 0),
        waiting=waiting_now,
        timeouts=timeouts,
        invalidated=counters.invalidated,
        **about_replica,
    )


def _max_overflow(engine: AsyncEngine, pool: QueuePool) -> int | None:
    cap = engine.sync_engine.get_execution_options().get(TURN_SLOTS)
    return cap - pool.size() if isinstance(cap, int) else None  # no cap: unbounded overflow
