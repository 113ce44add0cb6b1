"""The pool ``create_engine`` builds: SQLAlchemy's asyncio queue pool, with overflow that lingers.

SQLAlchemy's queue pool closes a connection beyond ``pool_size`` the moment it comes back to a
full pool. An app whose load rises above the pool size now and then (a burst of requests, a
slow report, a bulk import beside the web traffic) then opens new connections at every rise:
a connect, and a new server process whose caches and prepared statements start cold, so the
coalesced lookups plan their batch statement again on each. Here such a connection waits
instead, as a spare, and closes once it has gone unused for ``DATABASE_POOL_OVERFLOW_IDLE``
seconds (looked at whenever the pool hands out or takes back a connection, and on
``dispose``). The cap is unchanged: at most ``pool_size + max_overflow`` connections, and the
pool's own connections are handed out first, so spares are used only when those are all busy.
With ``DATABASE_POOL_OVERFLOW_IDLE=0`` the pool closes overflow on its return, as SQLAlchemy's.

The pool also counts checkout timeouts and connections found dead (``Counters``), which carry
over when ``engine.dispose()`` replaces it.
"""

import time
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from app_db.closing import close_if_cancelling
from app_db.turns import wait_recorders


class Counters:
    """Events counted since the engine was built."""

    __slots__ = ("invalidated", "timeouts")

    def __init__(self) -> None:
        self.timeouts = 0
        self.invalidated = 0


class EnginePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool: counted, timed, and keeping overflow connections warm."""

    # SQLAlchemy names a pool's logger after its class's module: keep it among its own, where
    # ``logging.getLogger("sqlalchemy.pool")`` finds it, not in app_db's namespace.
    __module__ = "sqlalchemy.pool.impl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = Counters()
        self.disposed = False
        self.overflow_idle = 0.0
        """Seconds an overflow connection may wait unused before it closes (0: at once);
        ``create_engine`` sets it from ``DATABASE_POOL_OVERFLOW_IDLE``."""
        self._spares: list[tuple[float, ConnectionPoolEntry]] = []
        """Overflow connections that came back to a full pool, with when: the latest last."""

    def checkedin(self) -> int:
        return super().checkedin() + len(self._spares)

    def checkedout(self) -> int:
        return super().checkedout() - len(self._spares)

    def returns_quietly(self) -> bool:
        """Return whether a connection given back now closes none (so needs no greenlet)."""
        if self.disposed:
            return False
        if not self._pool.full():
            return True
        return self.overflow_idle > 0 and not self._stale(time.monotonic())

    def dispose(self) -> None:
        """Close the pooled connections, and each checked-out one as it comes back.

        ``engine.dispose()`` replaces the pool; SQLAlchemy would queue a connection returned
        to the old one after that, open until the garbage collector found it (asyncpg's
        "unclosed connection" warning), its server session held meanwhile.
        """
        self.disposed = True
        self._retire(float("inf"))
        super().dispose()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        if self.disposed:
            record.close()
        elif self.overflow_idle > 0 and self._pool.full():
            now = time.monotonic()
            self._retire(now)
            self._spares.append((now, record))
        else:
            super()._do_return_conn(record)

    def _do_get(self) -> Any:  # the override point SQLAlchemy documents for pool classes
        started = time.perf_counter()
        try:
            if self._spares:
                self._retire(time.monotonic())
                if self._spares and self._pool.empty():  # all the pool's own are busy
                    return self._spares.pop()[1]  # the latest: the others may go idle
            return super()._do_get()
        except sa_exc.TimeoutError:
            self.counters.timeouts += 1
            raise
        finally:
            for record in wait_recorders:
                record(time.perf_counter() - started, "pool")

    def _stale(self, now: float) -> bool:
        return bool(self._spares) and now - self._spares[0][0] >= self.overflow_idle

    def _retire(self, now: float) -> None:
        """Close the spares unused for ``overflow_idle`` seconds (all of them at ``inf``)."""
        while self._stale(now):
            _, record = self._spares.pop(0)
            try:
                record.close()
            finally:
                self._dec_overflow()

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

    def recreate(self) -> "EnginePool":
        fresh = super().recreate()
        assert isinstance(fresh, EnginePool)
        fresh.counters = self.counters
        fresh.overflow_idle = self.overflow_idle
        return fresh
