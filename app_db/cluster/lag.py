"""A replica's lag, bounded from WAL positions: a measurement now and then, never one per read.

A measurement asks the primary for its WAL insert position, then the replica for the position it
has replayed. When the replica has replayed past a position the primary reported, it holds every
commit that had returned before that question was asked: its lag is at most the time since then.
``covered_at`` is the newest such moment, and ``bound(now)`` the lag it proves; between two
measurements the bound grows with the clock. Unlike ``pg_last_xact_replay_timestamp()``, which
grows without end while the primary is idle, this is a bound on what a read can miss.
"""

import time
from collections import deque
from dataclasses import dataclass, field

_KEPT = 256


@dataclass
class Lag:
    """What the measurements so far prove about one replica."""

    replayed: int | None = None
    """The replica's replayed position at the last measurement."""
    covered_at: float | None = None
    """The newest moment (``time.monotonic()``) whose primary position the replica has replayed."""
    measured_at: float = float("-inf")
    """When the last measurement finished."""
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=_KEPT))
    """The primary's positions, with when they were asked for, that the replica had not reached."""

    def record(self, asked_at: float, primary: int | None, replayed: int | None) -> None:
        """Add a measurement: the primary's position (asked at ``asked_at``), then the replica's."""
        self.measured_at = time.monotonic()
        if primary is not None:
            self.samples.append((asked_at, primary))
        if replayed is None:
            return
        self.replayed = replayed
        covered = [when for when, position in self.samples if position <= replayed]
        if covered:
            newest = max(covered)
            if self.covered_at is None or newest > self.covered_at:
                self.covered_at = newest
            kept = [(when, position) for when, position in self.samples if position > replayed]
            self.samples.clear()
            self.samples.extend(kept)

    def bound(self, now: float) -> float | None:
        """Return the most the replica can lag behind the primary now, in seconds, if known."""
        return None if self.covered_at is None else max(0.0, now - self.covered_at)

    def reported(self) -> float | None:
        """Return the bound as of the last measurement (what stats and metrics show)."""
        return None if self.covered_at is None else max(0.0, self.measured_at - self.covered_at)
