"""The suite runs with the OpenTelemetry SDK on: every span and app_db log record is kept.

``install()`` sets an in-memory span exporter and metric reader as the global providers and
instruments asyncpg, once per test run. It also records every secret the run handles (each
token issued, each password hashed or checked), so that the check at the run's end
(``conftest.no_secret_in_what_the_run_exported``) can look for them, and for any email
address, in everything exported.
"""

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app_db import sessions, users
from app_db.observe.scrub import scrubbed
from app_db.security import one_time, tokens
from tests.factories import PASSWORD

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


class Keeper(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: Keeper
    secrets: set[str] = field(default_factory=set)
    scanned: list[ReadableSpan] = field(default_factory=list)

    def finished(self) -> list[ReadableSpan]:
        """Return the spans ended since the last call (and keep them for the final scan)."""
        found = list(self.spans.get_finished_spans())
        self.spans.clear()
        self.scanned.extend(found)
        return found

    def every_span(self) -> list[ReadableSpan]:
        self.finished()
        return self.scanned


def _texts(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    for attributes in (span.attributes, span.resource.attributes):
        for key, value in (attributes or {}).items():
            yield f"{key}={value!s}"
    for event in span.events:
        yield event.name
        yield str(dict(event.attributes or {}))
    if span.status.description:
        yield span.status.description


_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """Return what a record carries beyond the standard attributes: its ``extra`` fields."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


# The example's stand-in for mail: logging the link (token included) is its whole job, as a mail
# would carry it; it logs at INFO only (tests/test_example_recovery.py).
DELIVERS_TOKENS = "app_db.example.mail"
TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{43,}")
TOKEN_LENGTH = 43


def _holds_a_token(text: str, tokens: set[str]) -> bool:
    """Return whether ``text`` holds one of ``tokens`` (each 43 URL-safe characters)."""
    for run in TOKEN_RUN.findall(text):
        windows = range(len(run) - TOKEN_LENGTH + 1)
        if any(run[at : at + TOKEN_LENGTH] in tokens for at in windows):
            return True
    return False


def leaks(telemetry: Telemetry) -> list[str]:
    """Return every exported text that holds a recorded secret or an email address.

    A token is looked up in a set, window by window over each run of URL-safe characters long
    enough to hold one; the other secrets (passwords, a few) go into one pattern. Each distinct
    text is scanned once: a run exports the same statement thousands of times.
    """
    texts = [text for span in telemetry.every_span() for text in _texts(span)]
    records = [r for r in telemetry.logs.records if r.name != DELIVERS_TOKENS]
    texts += [record.getMessage() for record in records]
    texts += [f"{k}={v!s}" for r in records for k, v in _fields(r).items()]
    shaped = {s for s in telemetry.secrets if TOKEN_RUN.fullmatch(s) and len(s) == TOKEN_LENGTH}
    others = sorted(telemetry.secrets - shaped, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, others)) if others else "(?!)")

    def leaking(text: str) -> bool:
        return bool(EMAIL.search(text) or pattern.search(text) or _holds_a_token(text, shaped))

    found = {text for text in dict.fromkeys(texts) if leaking(text)}
    return [text[:200] for text in texts if text in found]


def _keeping_tokens(secrets: set[str]) -> Callable[[], str]:
    issue = tokens.new_token

    def new_token() -> str:
        token = issue()
        secrets.add(token)
        return token

    return new_token


def _keeping_passwords(function: Callable[..., Any], secrets: set[str], at: int) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        password = str(args[at])
        if len(set(password)) > 2:
            # A password of one or two characters repeated (generated input: "xxxxxxxx") would
            # match any long run of them, such as a test's user agent of 600 x's; the scan
            # looks for passwords a reader could recognise.
            secrets.add(password)
        return await function(*args, **kwargs)

    return wrapper


_installed: Telemetry | None = None


def install() -> Telemetry:
    """Install the SDK with in-memory exporters, once; return what it records."""
    global _installed  # noqa: PLW0603 - one SDK per process
    if _installed is not None:
        return _installed
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(scrubbed(SimpleSpanProcessor(spans)))  # as the docs advise
    trace.set_tracer_provider(tracing)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    keeper = Keeper()
    logging.getLogger().addHandler(keeper)
    logging.getLogger("app_db").setLevel(logging.INFO)
    _installed = Telemetry(spans, reader, keeper)
    secrets = _installed.secrets
    secrets.add(PASSWORD)
    # The modules call these by their imported names: wrap those names.
    sessions.new_token = _keeping_tokens(secrets)  # type: ignore[attr-defined]
    one_time.new_token = _keeping_tokens(secrets)  # type: ignore[attr-defined]
    users.hash_password = _keeping_passwords(users.hash_password, secrets, 0)  # type: ignore[attr-defined]
    users.verify_password = _keeping_passwords(users.verify_password, secrets, 1)  # type: ignore[attr-defined]
    return _installed
