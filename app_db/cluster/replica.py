"""Read-replica routing: which engine a read goes to, and a back-off while the replica is down.

``create_engine`` registers the replica engine it builds for ``DATABASE_READ_URL``. A read that
cannot reach the replica goes to the primary instead, and the replica is left alone for
``DATABASE_READ_RETRY_INTERVAL`` seconds before a read tries it again. One WARNING record
marks the start of an outage and one INFO record its end, however many reads fall back.
"""

import logging
import time
import weakref
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


@dataclass
class Replica:
    """A primary's read replica and what the last reads learnt about it."""

    engine: AsyncEngine
    retry_interval: float
    down_since: float | None = None
    retry_at: float = 0.0
    last_error: str | None = None
    fallbacks: int = 0

    @property
    def usable(self) -> bool:
        """Return whether reads should try the replica now."""
        return self.down_since is None or time.monotonic() >= self.retry_at

    def failed(self, error: BaseException) -> None:
        """Record that the replica could not be reached; reads go to the primary for a while."""
        now = time.monotonic()
        self.last_error = type(error).__name__
        self.fallbacks += 1
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
        if self.down_since is not None:
            log.info(
                "read replica reachable again after %.1f s", time.monotonic() - self.down_since
            )
            self.down_since = None
            self.last_error = None


REPLICAS: "weakref.WeakKeyDictionary[Engine, Replica]" = weakref.WeakKeyDictionary()
"""Read replicas, keyed by their primary's sync engine (``DATABASE_READ_URL``)."""


def register(primary: AsyncEngine, replica: AsyncEngine, *, retry_interval: float) -> None:
    """Make ``replica`` take the reads of ``primary``."""
    REPLICAS[primary.sync_engine] = Replica(replica, retry_interval)


def unregister(primary: AsyncEngine) -> AsyncEngine | None:
    """Forget ``primary``'s replica and return its engine, if it had one."""
    replica = REPLICAS.pop(primary.sync_engine, None)
    return None if replica is None else replica.engine


def replica_of(primary: AsyncEngine) -> Replica | None:
    """Return the replica registered for ``primary``, if any."""
    return REPLICAS.get(primary.sync_engine) if REPLICAS else None
