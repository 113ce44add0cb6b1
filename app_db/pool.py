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

A connection that is ready (idle, open, not due for recycling, with no ping or checkout hook
that talks to the server) is handed out and taken back without SQLAlchemy's greenlet, which
costs about 10 µs per borrow (``borrow`` and ``give_back``, for a connection used outside a
session: the fast path's reads and the WAL position reads).

The pool also counts checkout timeouts and connections found dead (``Counters``), which carry
over when ``engine.dispose()`` replaces it.
"""

import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import (
    AsyncAdaptedQueuePool,
    ConnectionPoolEntry,
    PoolProxiedConnection,
    QueuePool,
)
from sqlalchemy.util import greenlet_spawn

from app_db.closing import close_if_cancelling
from app_db.turns import wait_recorders

T = TypeVar("T")


class Counters:
    """Events counted since the engine was built."""

    __slots__ = ("invalidated", "timeouts")

    def __init__(self) -> None:
        self.timeouts = 0
        self.invalidated = 0


CHECKS_MIRRORED = sqlalchemy.__version__.startswith("2.1.")
"""Whether ``EnginePool._ready`` mirrors the checks of this SQLAlchemy's checkout (2.1's).

With a SQLAlchemy it was not written for, every checkout goes through the greenlet, as before:
a check added there could need I/O that a plain call cannot do."""


def refuse_closed_connection(dbapi_connection: Any, *_: object) -> None:
    """Make the pool replace a connection the driver already saw closed, at no round trip.

    A server that terminates a backend or restarts closes the socket; asyncpg notices at once.
    The full ``pool_pre_ping`` of SQLAlchemy's asyncpg dialect costs a BEGIN and a ROLLBACK on
    every checkout, so it is off by default and this check (a ``checkout`` listener that
    ``create_engine`` adds) stands in for it.
    """
    if _driver_closed(dbapi_connection):
        raise sa_exc.DisconnectionError("the server closed this connection")


def _driver_closed(dbapi_connection: Any) -> bool:
    driver = getattr(dbapi_connection, "driver_connection", None)
    return driver is not None and bool(driver.is_closed())


class NotReadyError(Exception):
    """A quiet checkout found no connection that it could hand out without I/O."""


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
        self._quiet = False
        """Whether the checkout under way is ``checkout_quietly``'s."""

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

    def checkout_quietly(self) -> PoolProxiedConnection | None:
        """Hand out the connection a checkout would, when that needs no I/O; else ``None``.

        SQLAlchemy's asyncio pool checks out inside a greenlet, in case the checkout must
        connect, recycle, ping or run a hook that talks to the server. This one runs as a plain
        call, and only when none of that can happen: no ``pool_pre_ping``, no ``checkout``
        listener but app_db's, and the connection it would hand out is open and ready. On
        ``None`` (the pool has no idle connection, or the next one is not ready), the caller
        checks out through SQLAlchemy as usual, which waits, connects or recycles.
        """
        return self.quietly(self.connect)

    def quietly(self, take: Callable[[], T]) -> T | None:
        """Return ``take()`` run with the pool's checkouts quiet, or ``None`` if they cannot be.

        A quiet checkout hands out a ready connection with no I/O, or raises ``NotReadyError``
        before it took anything (then this returns ``None``). Checkouts cannot be quiet with a
        ``pool_pre_ping``, a ``checkout`` listener but app_db's (either could talk to the
        server), or a SQLAlchemy whose checks ``_ready`` does not mirror.
        """
        if (
            not CHECKS_MIRRORED
            or self.disposed
            or self._pre_ping
            or any(listener is not refuse_closed_connection for listener in self.dispatch.checkout)
        ):
            return None
        self._quiet = True
        try:
            return take()
        except NotReadyError:
            return None
        finally:
            self._quiet = False

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
        if self._quiet:
            ready = self._ready_record()
            for recorder in wait_recorders:
                recorder(0.0, "pool")  # it waited for nothing
            return ready
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

    def _ready_record(self) -> ConnectionPoolEntry:
        """Take the connection ``_do_get`` would hand out, if it is ready; else raise."""
        if self._stale(time.monotonic()):  # retiring a spare closes it: I/O
            raise NotReadyError
        if not self._pool.empty():
            record = self._pool.get_nowait()
            if self._ready(record):
                return record
            self._pool.put_nowait(record)  # the checkout through SQLAlchemy renews it
            raise NotReadyError
        if self._spares and self._ready(self._spares[-1][1]):
            return self._spares.pop()[1]
        raise NotReadyError

    def _ready(self, record: Any) -> bool:
        """Whether SQLAlchemy hands out this connection as it is (``get_connection``'s checks).

        A connection within a second of ``pool_recycle`` counts as due, to stay on the safe
        side of the clock.
        """
        connection = record.dbapi_connection
        if connection is None or _driver_closed(connection):
            return False
        started = record.starttime
        if self._recycle > -1 and time.time() - started > self._recycle - 1:
            return False
        return not (self._invalidate_time >= started or record._soft_invalidate_time >= started)

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


async def borrow(engine: AsyncEngine) -> PoolProxiedConnection:
    """Check out a pooled connection of ``engine``: without SQLAlchemy's greenlet when it can."""
    pool = engine.sync_engine.pool
    if isinstance(pool, EnginePool):
        pooled = pool.checkout_quietly()
        if pooled is not None:
            return pooled
    return await engine.raw_connection()


async def give_back(engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
    """Return a borrowed connection to the pool, in a greenlet when the pool must close it.

    No transaction is open on it (none began, or it ended), so its reset costs no round trip.
    A pool that closes nothing on this return keeps it at no cost; one that closes a
    connection (an overflow connection coming back to a full queue, a spare unused too long)
    or a ``NullPool`` needs SQLAlchemy's greenlet, since the close awaits the driver.
    """
    # The connection goes back to the pool it came from: the engine's, unless it was disposed.
    pool = getattr(pooled, "_pool", None) or engine.sync_engine.pool
    if isinstance(pool, EnginePool):
        quiet = pool.returns_quietly()
    else:
        quiet = isinstance(pool, QueuePool) and pool.checkedin() < pool.size()
    if quiet:
        pooled.close()
    else:
        await greenlet_spawn(pooled.close)


async def drop(pooled: PoolProxiedConnection, cause: BaseException) -> None:
    """Close a pooled connection at once, without the graceful close a hung server never ends.

    (SQLAlchemy's asyncpg adapter waits up to 2 s for a graceful close when it invalidates.)
    """
    driver = pooled.driver_connection
    if driver is not None:
        driver.terminate()
    await greenlet_spawn(pooled.invalidate, cause)
