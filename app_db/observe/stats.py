"""The pool's numbers as plain values: ``pool_stats(engine)``, for ``/healthz``, ``app-db check``
and the metrics.

The counters live on the pool (``CountingPool``, the pool ``create_engine`` builds), and carry
over when ``engine.dispose()`` replaces the pool.
"""

import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool, QueuePool

from app_db.closing import close_if_cancelling
from app_db.cluster.replica import replica_of
from app_db.turns import TURN_SLOTS, turn_timeouts, wait_recorders, waiting


class Counters:
    """Events counted since the engine was built."""

    __slots__ = ("invalidated", "timeouts")

    def __init__(self) -> None:
        self.timeouts = 0
        self.invalidated = 0


class CountingPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, counting checkout timeouts and timing checkouts."""

    # SQLAlchemy names a pool's logger after its class's module: keep it among its own, where
    # ``logging.getLogger("sqlalchemy.pool")`` finds it, not in app_db's namespace.
    __module__ = "sqlalchemy.pool.impl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = Counters()
        self.disposed = False

    def dispose(self) -> None:
        """Close the pooled connections, and each checked-out one as it comes back.

        ``engine.dispose()`` replaces the pool; SQLAlchemy would queue a connection returned
        to the old one after that, open until the garbage collector found it (asyncpg's
        "unclosed connection" warning), its server session held meanwhile.
        """
        self.disposed = True
        super().dispose()

    def _do_return_conn(self, record: Any) -> None:
        if self.disposed:
            record.close()
        else:
            super()._do_return_conn(record)

    def _do_get(self) -> Any:  # the override point SQLAlchemy documents for pool classes
        started = time.perf_counter()
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            self.counters.timeouts += 1
            raise
        finally:
            for record in wait_recorders:
                record(time.perf_counter() - started, "pool")

    def _close_connection(self, connection: Any, *, terminate: bool = False) -> None:
        """Close gracefully, or quietly when the server has already dropped the connection.

        A backend killed while its connection sat in the pool or on its way back makes the
        graceful close fail (``BrokenPipeError``), which SQLAlchemy logs as an ERROR with a
        traceback although nothing is lost: the connection is gone either way. It is then
        terminated and counted as invalidated instead. A close made while the task is being
        cancelled never waits for the server.
        """
        if close_if_cancelling(connection):  # see app_db.closing
            terminate = True
        if not terminate:
            self.logger.debug("Closing connection %r", connection)
            try:
                self._dialect.do_close(connection)
            except OSError:  # BrokenPipeError, ConnectionResetError: the server went first
                self.counters.invalidated += 1
            else:
                return
        super()._close_connection(connection, terminate=True)

    def recreate(self) -> "CountingPool":
        fresh = super().recreate()
        assert isinstance(fresh, CountingPool)
        fresh.counters = self.counters
        return fresh


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
