"""``scrubbed(processor)``: exception messages out of every span, before any exporter sees them.

A span records an exception with its message and stack trace. The messages PostgreSQL sends
can hold row values: ``Key (lower(email))=(someone@example.com) already exists``. app_db's own
spans record only error class names, but the asyncpg instrumentation's statement spans record
the driver's exceptions in full. Wrap the span processor you export with, and every span keeps
the exception's type and loses its message, its stack trace and any status description
beyond a class name::

    provider.add_span_processor(scrubbed(BatchSpanProcessor(OTLPSpanExporter())))

This module needs ``opentelemetry-sdk``, which an app that exports spans has installed.
"""

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status

KEPT = ("exception.type", "exception.escaped")
"""The attributes of an exception event that are kept: its type, never its message."""


class _Scrubbing(SpanProcessor):
    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(_scrubbed(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def scrubbed(processor: SpanProcessor) -> SpanProcessor:
    """Return a processor that hands ``processor`` each span without exception messages."""
    return _Scrubbing(processor)


def _scrubbed(span: ReadableSpan) -> ReadableSpan:
    description = span.status.description
    if _safe(description) and not any(event.name == "exception" for event in span.events):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, description if _safe(description) else None),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _safe(description: str | None) -> bool:
    """A status description that is a class name alone (app_db's spans) holds no data."""
    return description is None or description.isidentifier()


def _event(event: Any) -> Event:
    if event.name != "exception":
        return event  # type: ignore[no-any-return]
    kept = {key: value for key, value in (event.attributes or {}).items() if key in KEPT}
    return Event(event.name, kept, event.timestamp)
