"""After the whole run: no span and no log record holds a password, a token or an email."""

import logging

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app_db.security.tokens import new_token
from tests.telemetry import Keeper, Telemetry, leaks


@pytest.mark.scans_the_run
def test_no_span_or_log_record_of_the_run_holds_a_secret(telemetry: Telemetry) -> None:
    spans = telemetry.every_span()
    names = {span.name for span in spans}
    if "app_db.sessions.issue" not in names:
        pytest.skip("scans a whole run: this one issued no session")
    assert len(spans) > 100
    assert len(telemetry.secrets) > 10  # tokens issued and passwords seen during the run
    assert {"app_db.users.create", "app_db.sessions.validate", "app_db.customers.list"} <= names
    assert leaks(telemetry) == []


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
