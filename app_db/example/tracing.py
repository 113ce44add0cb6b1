"""Tracing for the example app: ``app-db dev --trace`` prints each request's spans as a tree;
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, they go to that collector too.

The FastAPI and asyncpg spans come from the standard instrumentation packages (the ``dev``
extra installs them); app_db's own spans sit between them. Every exporter is wrapped in
``scrubbed``, so no exception message leaves the process.
"""

import importlib
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TextIO

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from app_db import ConfigurationError
from app_db.observe.scrub import scrubbed

OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"


class TreePrinter(SpanExporter):
    """Print each trace as an indented tree of span names and durations, once its root ends."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._pending: dict[int, list[ReadableSpan]] = defaultdict(list)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            assert span.context is not None
            trace_spans = self._pending[span.context.trace_id]
            trace_spans.append(span)
            if span.parent is None:  # the root ends last
                self._out.write(tree(self._pending.pop(span.context.trace_id)))
                self._out.flush()
        return SpanExportResult.SUCCESS


def tree(spans: Sequence[ReadableSpan]) -> str:
    """Return the spans of one trace as lines, each child indented under its parent."""
    by_parent: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        by_parent[None if span.parent is None else span.parent.span_id].append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        assert span.context is not None
        took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        links = f"  (linked to {len(span.links)} callers)" if span.links else ""
        lines.append(f"{'  ' * depth}{span.name}  {took:.2f} ms{links}")
        for child in sorted(by_parent[span.context.span_id], key=lambda s: s.start_time or 0):
            walk(child, depth + 1)

    for root in by_parent[None]:
        walk(root, 0)
    return "trace:\n" + "".join(f"  {line}\n" for line in lines)


URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query")
"""The request span's attributes that may carry the query string."""


def without_query_values(span: Any, _scope: Any = None) -> None:
    """Mask the query string's values in a request span: ``?search=`` may hold an email."""
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and ("?" in value or key == "url.query"):
            head, _, query = value.rpartition("?") if key != "url.query" else ("", "", value)
            masked = "&".join(f"{part.split('=', 1)[0]}=?" for part in query.split("&") if part)
            span.set_attribute(key, f"{head}?{masked}" if key != "url.query" else masked)


def instrument(app: FastAPI, provider: Any = None) -> None:
    """Trace the app's requests and every asyncpg statement (once per process)."""
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, server_request_hook=without_query_values
    )
    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call] # a singleton
    if not asyncpg.is_instrumented_by_opentelemetry:
        asyncpg.instrument(tracer_provider=provider)


def configure(*, console: bool) -> TracerProvider | None:
    """Set up the SDK: a tree on stdout with ``console``, OTLP when its endpoint is set.

    Return ``None`` when neither is asked for: the app then records no span at all.
    """
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not console and not endpoint:
        return None
    name = os.environ.get("OTEL_SERVICE_NAME", "app_db example")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if console:
        provider.add_span_processor(scrubbed(SimpleSpanProcessor(TreePrinter())))
    if endpoint:
        provider.add_span_processor(scrubbed(BatchSpanProcessor(_otlp_exporter())))
    trace.set_tracer_provider(provider)
    return provider


def _otlp_exporter() -> SpanExporter:
    try:
        otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set: install {OTLP_PACKAGE} to send spans there"
        ) from None
    exporter: SpanExporter = otlp.OTLPSpanExporter()  # reads the endpoint and headers itself
    return exporter
