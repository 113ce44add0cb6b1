"""Borrowers of a pooled connection queue first come, first served, at most the pool's cap."""

import asyncio
import time
import weakref
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from app_db.errors import PoolTimeoutError

TURN_SLOTS = "app_db_turn_slots"
"""The engine execution option that ``create_engine`` sets: pool size plus max overflow."""


class _Turn:
    """Queue borrowers first come, first served, at most as many as the pool holds.

    SQLAlchemy's pool lets a newcomer take a connection that a waiting task was about to get,
    which under load leaves some requests waiting far longer than the rest (the p99 latency).
    A wait is bounded by the pool's own timeout.
    """

    __slots__ = ("_semaphore", "_timeout", "timeouts", "waiting")

    def __init__(self, slots: int, timeout: float) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._timeout = timeout
        self.waiting = 0
        self.timeouts = 0

    async def __aenter__(self) -> None:
        if not self._semaphore.locked():
            await self._semaphore.acquire()  # a free turn: no timer to arm and cancel
            return
        self.waiting += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._semaphore.acquire()
        except TimeoutError:
            self.timeouts += 1
            message = "no pooled connection became free within the pool timeout"
            raise PoolTimeoutError(message) from None
        finally:
            self.waiting -= 1
            for record in wait_recorders:
                record(time.perf_counter() - started, "turn")

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()


class _NoTurn:
    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


_NO_TURN = _NoTurn()
wait_recorders: list[Callable[[float, str], None]] = []
"""Called with each wait for a turn (seconds) and the queue's name; the metrics add theirs."""
_turns: "weakref.WeakKeyDictionary[Engine, dict[asyncio.AbstractEventLoop, _Turn | _NoTurn]]"
_turns = weakref.WeakKeyDictionary()


def fair_turn(engine: AsyncEngine) -> "_Turn | _NoTurn":
    """Return the running loop's queue of borrowers for ``engine`` (none for other pools)."""
    per_loop = _turns.get(engine.sync_engine)
    if per_loop is None:
        per_loop = _turns[engine.sync_engine] = {}
    loop = asyncio.get_running_loop()
    turn = per_loop.get(loop)
    if turn is None:
        turn = per_loop[loop] = _new_turn(engine)
    return turn


def _new_turn(engine: AsyncEngine) -> _Turn | _NoTurn:
    """Size the queue by the connection cap ``create_engine`` recorded; none for other pools."""
    pool = engine.sync_engine.pool
    slots = engine.sync_engine.get_execution_options().get(TURN_SLOTS)
    if not isinstance(pool, QueuePool) or not isinstance(slots, int):
        return _NO_TURN
    return _Turn(slots, pool.timeout())


def waiting(engine: AsyncEngine) -> int:
    """Return how many tasks wait for a turn at ``engine``'s connections, in every loop."""
    per_loop = _turns.get(engine.sync_engine, {})
    return sum(turn.waiting for turn in per_loop.values() if isinstance(turn, _Turn))


def turn_timeouts(engine: AsyncEngine) -> int:
    """Return how many waits for a turn at ``engine``'s connections timed out."""
    per_loop = _turns.get(engine.sync_engine, {})
    return sum(turn.timeouts for turn in per_loop.values() if isinstance(turn, _Turn))
