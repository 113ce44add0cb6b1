"""Read-replica routing: whether a read may go to the replica, and a back-off while it is down.

``create_engine`` registers the replica engine it builds for ``DATABASE_READ_URL``. A read goes
there only while the replica is up, its lag is within ``DATABASE_READ_MAX_LAG``, and it has
replayed the position the transaction asked for (see ``app_db.cluster.routing``). A read that
fails on the replica, or gets no answer within ``DATABASE_READ_TIMEOUT``, goes to the primary,
and the replica is left alone for ``DATABASE_READ_RETRY_INTERVAL`` seconds. One WARNING record,
with the cause, marks the start of an outage and one INFO record its end, however many reads
fall back.

The lag is measured by the reads themselves: the first read after ``measure_every`` seconds
starts one measurement in the background (two one-row queries) and goes on at once.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.cluster import wal
from app_db.cluster.lag import Lag
from app_db.errors import DatabaseUnavailableError, PoolTimeoutError, typed_error

log = logging.getLogger(__name__)

MEASURE_EVERY = 1.0
"""Seconds between lag measurements while reads come (a quarter of the bound, if shorter)."""

ON_REPLICA = "replica"
LAGGING = "lagging"
DOWN = "down"


@dataclass
class Replica:
    """A primary's read replica and what the last reads and measurements learnt about it."""

    engine: AsyncEngine
    retry_interval: float
    read_timeout: float = 2.0
    max_lag: float | None = None
    down_since: float | None = None
    retry_at: float = 0.0
    last_error: str | None = None
    fallbacks: int = 0
    reads: int = 0
    lag: Lag = field(default_factory=Lag)
    _measuring: "asyncio.Task[None] | None" = None

    @property
    def measure_every(self) -> float:
        """Return the seconds between lag measurements."""
        return MEASURE_EVERY if self.max_lag is None else min(MEASURE_EVERY, self.max_lag / 4)

    def serves(self, primary: AsyncEngine, after: int | None) -> bool:
        """Return whether a read that must see position ``after`` (if any) may go here now.

        A measurement starts in the background when the last one is older than
        ``measure_every``; this never waits for it.
        """
        now = time.monotonic()
        if self.down_since is not None and now < self.retry_at:
            return False
        lag = self.lag
        if now - lag.measured_at >= self.measure_every:
            self._measure_soon(primary)
        if after is not None and (lag.replayed is None or lag.replayed < after):
            return False
        if self.max_lag is None:
            return True
        return lag.covered_at is not None and now - lag.covered_at <= self.max_lag

    def route(self) -> str:
        """Return where reads go now: ``replica``, ``lagging`` or ``down`` (both the primary)."""
        now = time.monotonic()
        if self.down_since is not None and now < self.retry_at:
            return DOWN
        bound = self.lag.bound(now)
        if self.max_lag is not None and (bound is None or bound > self.max_lag):
            return LAGGING
        return ON_REPLICA

    def fall_back(self, error: BaseException) -> bool:
        """Return whether a read that raised ``error`` on the replica should go to the primary.

        An unreachable or hung replica is marked down; a full pool only sends this read away.
        """
        typed = typed_error(error)
        if isinstance(typed, PoolTimeoutError):
            self.fallbacks += 1
            return True
        if not isinstance(typed, DatabaseUnavailableError):
            return False
        self.fallbacks += 1
        self.failed(error)
        return True

    def failed(self, error: BaseException) -> None:
        """Record that the replica could not be reached; reads go to the primary for a while."""
        now = time.monotonic()
        self.last_error = describe(error)
        self.retry_at = now + self.retry_interval
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "read replica unreachable (%s): reads go to the primary, retrying every %g s",
                self.last_error,
                self.retry_interval,
            )

    def answered(self) -> None:
        """Record that the replica served a read again."""
        self.reads += 1
        if self.down_since is not None:
            log.info(
                "read replica reachable again after %.1f s", time.monotonic() - self.down_since
            )
            self.down_since = None
            self.last_error = None

    def _measure_soon(self, primary: AsyncEngine) -> None:
        if self._measuring is not None and not self._measuring.done():
            return
        self.lag.measured_at = time.monotonic()  # one measurement at a time, even if it fails
        self._measuring = asyncio.get_running_loop().create_task(self.measure(primary))

    async def measure(self, primary: AsyncEngine) -> None:
        """Measure the lag now: the primary's position, then what the replica replayed."""
        asked_at = time.monotonic()
        try:
            position = await wal.read(primary, wal.PRIMARY_POSITION_SQL, None)
        except Exception as exc:  # the primary's own failures show on the primary's reads
            if typed_error(exc) is None:
                raise
            return
        try:
            replayed = await wal.read(self.engine, wal.REPLAYED_POSITION_SQL, self.read_timeout)
        except TimeoutError:
            self.failed(DatabaseUnavailableError(self.timeout_message()))
            return
        except Exception as exc:
            if typed_error(exc) is None:
                raise
            self.failed(exc)
            return
        self.lag.record(asked_at, position, replayed)

    def timeout_message(self) -> str:
        """Return what a read that the replica did not answer in time says."""
        return f"no answer within {self.read_timeout:g} s (DATABASE_READ_TIMEOUT)"

    async def close(self) -> None:
        """Stop a measurement in flight."""
        task, self._measuring = self._measuring, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def describe(error: BaseException) -> str:
    """Return the type and text of the cause of ``error``, for a log line (never a secret)."""
    cause = error
    while isinstance(cause.__cause__, BaseException):
        cause = cause.__cause__
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


REPLICAS: "weakref.WeakKeyDictionary[Engine, Replica]" = weakref.WeakKeyDictionary()
"""Read replicas, keyed by their primary's sync engine (``DATABASE_READ_URL``)."""


def register(primary: AsyncEngine, replica: Replica) -> None:
    """Make ``replica`` take the reads of ``primary``."""
    REPLICAS[primary.sync_engine] = replica


def unregister(primary: AsyncEngine) -> Replica | None:
    """Forget ``primary``'s replica and return it, if it had one."""
    return REPLICAS.pop(primary.sync_engine, None)


def replica_of(primary: AsyncEngine) -> Replica | None:
    """Return the replica registered for ``primary``, if any."""
    return REPLICAS.get(primary.sync_engine) if REPLICAS else None
