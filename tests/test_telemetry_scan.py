"""The scan that ends every run (``conftest.no_secret_in_what_the_run_exported``) finds what
it looks for: a recorded token and an email address in an exported span."""

import logging

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app_db.security.tokens import new_token
from tests.telemetry import Keeper, Telemetry, leaks


def test_the_scan_finds_what_it_looks_for() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = new_token()
    with provider.get_tracer("planted").start_as_current_span("planted") as span:
        span.set_attribute("harmless", "app_db.sessions.validate")
        span.set_attribute("token", f"Bearer {token}")
        span.set_attribute("email", "someone@example.com")
    planted = Telemetry(exporter, InMemoryMetricReader(), Keeper(), secrets={token})
    planted.logs.records = [logging.makeLogRecord({"msg": "a line with nothing secret"})]

    found = leaks(planted)

    assert found == [f"token=Bearer {token}", "email=someone@example.com"]
