"""The OpenTelemetry API, when ``app-db[otel]`` is installed, and whether an SDK listens.

Without the API, or with the API and no SDK configured, app_db records nothing and pays one
cheap check per call. The metrics are observed from ``stats`` when the SDK collects them, so
the hot path records only the two histograms (checkout wait, batch size), and only when an SDK
listens.
"""

import functools
import importlib
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.observe import stats
from app_db.turns import wait_recorders


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


trace: Any = _optional("opentelemetry.trace")
metrics: Any = _optional("opentelemetry.metrics")

INSTRUMENTATION = "app_db"
DB_SYSTEM = {"db.system.name": "postgresql"}

_engines: "weakref.WeakKeyDictionary[AsyncEngine, str]" = weakref.WeakKeyDictionary()


RECHECK_SECONDS = 1.0
"""How soon an SDK set up after app_db's first call is noticed (the check costs a microsecond,
so it runs at most this often while no SDK listens; once one does, it always will)."""


class _Listening:
    """Whether an SDK listens, checked at most every ``RECHECK_SECONDS`` until one does."""

    __slots__ = ("_check", "_next", "on")

    def __init__(self, check: Callable[[], bool]) -> None:
        self._check = check
        self._next = 0.0
        self.on = False

    def __call__(self) -> bool:
        if self.on:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + RECHECK_SECONDS
        self.on = self._check()
        return self.on


def _tracer_provider_set() -> bool:
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _meter_provider_set() -> bool:
    if metrics is None:
        return False
    return not isinstance(metrics.get_meter_provider(), _DEFAULT_METER_PROVIDERS)


tracing_on = _Listening(_tracer_provider_set)
"""Return whether an SDK records spans (the API's default provider records none)."""
metrics_on = _Listening(_meter_provider_set)
"""Return whether an SDK collects metrics."""


def register(engine: AsyncEngine, pool_name: str) -> None:
    """Report ``engine``'s pool in the metrics, as ``db.client.connection.pool.name``."""
    _engines[engine] = pool_name


@functools.cache
def tracer() -> Any:
    """Return app_db's tracer (the API's proxy follows the SDK once one is set)."""
    assert trace is not None
    return trace.get_tracer(INSTRUMENTATION)


def _observe(read: str) -> Any:
    def callback(_options: Any) -> Iterable[Any]:
        assert metrics is not None
        for engine, name in list(_engines.items()):
            numbers = stats.pool_stats(engine)
            for value, attributes in _READINGS[read](numbers):
                if value is not None:
                    yield metrics.Observation(
                        value, {"db.client.connection.pool.name": name, **attributes}
                    )

    return callback


ROUTE = "app_db.replica.route"
ROUTES = ("replica", "lagging", "down")
_READINGS: dict[str, Any] = {
    "count": lambda s: [
        (s.in_use, {"db.client.connection.state": "used"}),
        (s.idle, {"db.client.connection.state": "idle"}),
    ],
    "overflow": lambda s: [(s.overflow, {})],
    "pending": lambda s: [(s.waiting, {})],
    "timeouts": lambda s: [(s.timeouts, {})],
    "invalidated": lambda s: [(s.invalidated, {})],
    "fallbacks": lambda s: [(s.replica_fallbacks, {})],
    "replica_reads": lambda s: [(s.replica_reads if s.replica_route else None, {})],
    "lag": lambda s: [(s.replica_lag_s, {})],
    "route": lambda s: [
        (None if s.replica_route is None else int(s.replica_route == route), {ROUTE: route})
        for route in ROUTES
    ],
}

_OBSERVED = (
    # kind, name, what stats gives, unit, description
    ("up_down_counter", "db.client.connection.count", "count", "{connection}",
     "Connections in the pool, by state (used, idle)."),
    ("up_down_counter", "app_db.pool.overflow", "overflow", "{connection}",
     "Connections open beyond the pool size."),
    ("up_down_counter", "db.client.connection.pending_requests", "pending", "{request}",
     "Tasks waiting for their turn at a connection."),
    ("counter", "db.client.connection.timeouts", "timeouts", "{timeout}",
     "Checkouts that gave up after the pool timeout."),
    ("counter", "app_db.pool.invalidated", "invalidated", "{connection}",
     "Connections found dead and replaced."),
    ("counter", "app_db.replica.fallbacks", "fallbacks", "{read}",
     "Reads that went to the primary because the read replica failed."),
    ("counter", "app_db.replica.reads", "replica_reads", "{read}",
     "Reads the read replica served."),
    ("gauge", "app_db.replica.lag", "lag", "s",
     "The most the read replica lagged at its last measurement."),
    ("gauge", "app_db.replica.route", "route", "1",
     "1 for where replica reads go now: replica, lagging or down (the primary)."),
)  # fmt: skip

if metrics is not None:
    _DEFAULT_METER_PROVIDERS: tuple[type, ...] = (metrics.NoOpMeterProvider,)
    # The API's stand-in until an SDK is set lives in a private module: look it up softly.
    _proxy = _optional("opentelemetry.metrics._internal")
    if _proxy is not None and hasattr(_proxy, "_ProxyMeterProvider"):
        _DEFAULT_METER_PROVIDERS += (_proxy._ProxyMeterProvider,)
    _meter = metrics.get_meter(INSTRUMENTATION)
    for kind, name, reading, unit, description in _OBSERVED:
        create = getattr(_meter, f"create_observable_{kind}")
        create(name, [_observe(reading)], unit=unit, description=description)
    _wait = _meter.create_histogram(
        "db.client.connection.wait_time",
        unit="s",
        description="Time to get a connection: the fair turn queue, then the pool's own.",
    )
    _batch_size = _meter.create_histogram(
        "app_db.coalesce.batch_size",
        unit="{lookup}",
        description="Lookups sent as one statement.",
    )

    def _record_wait(seconds: float, queue: str) -> None:
        if metrics_on():
            _wait.record(seconds, {"app_db.queue": queue})

    wait_recorders.append(_record_wait)

    def record_batch(size: int, lookup: str) -> None:
        """Record one coalesced batch's size, when an SDK collects metrics."""
        if metrics_on():
            _batch_size.record(size, {"app_db.lookup": lookup})

else:  # pragma: no cover
    _DEFAULT_METER_PROVIDERS = ()

    def record_batch(size: int, lookup: str) -> None:
        """Record nothing: the OpenTelemetry API is not installed."""
