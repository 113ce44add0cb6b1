"""Spans, metrics and slow-statement logs, as the OpenTelemetry SDK's in-memory exporters show."""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    DuplicateEmailError,
    PoolTimeoutError,
    UserCreate,
    create_engine,
    create_sessionmaker,
    customers,
    pool_stats,
    sessions,
    transaction,
    users,
)
from app_db.engine import dispose
from tests.conftest import settings
from tests.factories import PASSWORD, make_user
from tests.telemetry import Telemetry

DB = {"db.system.name": "postgresql"}


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


def statements(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[str]:
    """The statements the asyncpg instrumentation saw under ``parent``."""
    return [str(attributes(span).get("db.statement", "")) for span in children(spans, parent)]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_validate_runs_in_its_span_with_its_statement_beneath(
    db_session: AsyncSession, telemetry: Telemetry
) -> None:
    user = await make_user(db_session)
    token, _ = await sessions.issue(db_session, user.id)
    telemetry.finished()

    assert await sessions.validate(db_session, token) is not None
    assert await sessions.validate(db_session, "x" * 43) is None

    spans = telemetry.finished()
    found, missing = named(spans, "app_db.sessions.validate")
    assert attributes(found) == {**DB, "app_db.outcome": "found"}
    assert attributes(missing) == {**DB, "app_db.outcome": "not_found"}
    assert any("token_hash" in sql for sql in statements(spans, found))


async def test_get_by_email_and_issue_spans(db_session: AsyncSession, telemetry: Telemetry) -> None:
    user = await make_user(db_session, "spans@example.com")
    telemetry.finished()

    assert await users.get_by_email(db_session, "SPANS@example.com") is not None
    await sessions.issue(db_session, user.id)

    spans = telemetry.finished()
    lookup = one(spans, "app_db.users.get_by_email")
    assert attributes(lookup) == {**DB, "app_db.outcome": "found"}
    assert any("lower(t.email)" in sql for sql in statements(spans, lookup))
    issue = one(spans, "app_db.sessions.issue")
    assert attributes(issue)["app_db.outcome"] == "found"
    assert any("INSERT INTO sessions" in sql for sql in statements(spans, issue))


async def test_list_and_bulk_import_spans_count_their_rows(
    db_session: AsyncSession, telemetry: Telemetry
) -> None:
    rows = [{"name": f"Span Ltd {n}"} for n in range(7)]
    telemetry.finished()

    assert await customers.bulk_import(db_session, rows) == 7
    page = await customers.list(db_session, limit=5)

    spans = telemetry.finished()
    loaded = one(spans, "app_db.customers.bulk_import")
    assert attributes(loaded) == {**DB, "app_db.outcome": "found", "app_db.rows": 7}
    # The asyncpg instrumentation has no span for COPY: the call's own span is its record.
    listed = one(spans, "app_db.customers.list")
    assert len(page.items) == 5
    assert attributes(listed) == {**DB, "app_db.outcome": "found", "app_db.rows": 5}
    assert statements(spans, listed)


async def test_a_typed_error_is_the_outcome_and_its_message_stays_out(
    db_session: AsyncSession, telemetry: Telemetry
) -> None:
    await make_user(db_session, "taken@example.com")
    telemetry.finished()

    with pytest.raises(DuplicateEmailError):
        await users.create(
            db_session,
            UserCreate.model_validate({"email": "Taken@example.com", "password": PASSWORD}),
        )

    span = one(telemetry.finished(), "app_db.users.create")
    assert attributes(span) == {
        **DB,
        "app_db.outcome": "DuplicateEmailError",
        "error.type": "DuplicateEmailError",
    }
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DuplicateEmailError"
    assert not span.events  # no exception event: its message names the email


async def test_a_coalesced_batch_of_20_is_one_statement_linked_from_each_caller(
    engine: AsyncEngine, telemetry: Telemetry
) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        emails = [(await make_user(db, f"linked{n}@example.com")).email for n in range(20)]
    telemetry.finished()

    async def lookup(email: str) -> uuid.UUID | None:
        async with transaction(maker) as db:
            user = await users.get_by_email(db, email)
            return None if user is None else user.id

    await lookup(emails[0])  # the first caller runs alone, at once
    telemetry.finished()
    found = await asyncio.gather(*(lookup(email) for email in emails))

    assert all(found)
    spans = telemetry.finished()
    callers = named(spans, "app_db.users.get_by_email")
    batches = named(spans, "app_db.coalesce.batch")
    assert len(callers) == 20
    assert sum(attributes(batch)["app_db.batch.size"] for batch in batches) == 20
    assert len(batches) < 20
    served = []
    for batch in batches:
        assert attributes(batch)["app_db.lookup"] == "users.email"
        assert len(statements(spans, batch)) == 1
        if attributes(batch)["app_db.batch.size"] == 1:  # a lone caller's child
            assert batch.parent is not None
            assert not batch.links
            served.append(batch.parent.span_id)
        else:  # it serves many callers: a root, linked to each
            assert batch.parent is None
            served += [link.context.span_id for link in batch.links]
    assert any(attributes(batch)["app_db.batch.size"] > 1 for batch in batches)
    assert sorted(served) == sorted(c.context.span_id for c in callers if c.context)
    for caller in callers:
        assert attributes(caller)["app_db.outcome"] == "found"
        assert [span.name for span in children(spans, caller)] in ([], ["app_db.coalesce.batch"])


def metric_points(telemetry: Telemetry, name: str, pool: str) -> list[Any]:
    data = telemetry.metrics.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
        if dict(point.attributes or {}).get("db.client.connection.pool.name", pool) == pool
    ]


async def test_metrics_under_a_load_that_exceeds_the_pool(
    own_database: URL, telemetry: Telemetry
) -> None:
    small = create_engine(settings(own_database, database_pool_size=2, database_max_overflow=0))
    pool_name = f"{small.url.host or 'localhost'}:{small.url.port or 5432}/{small.url.database}"
    maker = create_sessionmaker(small)
    async with transaction(maker) as db:
        emails = [(await make_user(db, f"load{n}@example.com")).email for n in range(12)]
    dsn = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
    locker = await asyncpg.connect(dsn)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")

            async def lookup(email: str) -> object:
                async with transaction(maker) as db:
                    return await users.get_by_email(db, email)

            async def hold() -> object:
                async with transaction(maker) as db:
                    return await (await db.connection()).execute(text("SELECT pg_sleep(0.2)"))

            tasks: list[asyncio.Task[object]] = [asyncio.create_task(hold())]
            for email in emails:  # one at a time: each starts a batch while batches can
                tasks.append(asyncio.create_task(lookup(email)))
                await asyncio.sleep(0.01)
            await _until(lambda: pool_stats(small).waiting >= 1)
            during = pool_stats(small)
            used = metric_points(telemetry, "db.client.connection.count", pool_name)
            pending = metric_points(telemetry, "db.client.connection.pending_requests", pool_name)
        await asyncio.gather(*tasks)
    finally:
        await locker.close()
    try:
        assert during.in_use == 2  # both connections, each blocked by the lock
        assert during.idle == 0
        assert during.waiting >= 1  # batches waiting for their turn
        assert any(
            p.value == 2 for p in used if p.attributes["db.client.connection.state"] == "used"
        )
        assert any(p.value >= 1 for p in pending)
        waits = metric_points(telemetry, "db.client.connection.wait_time", pool_name)
        assert sum(point.count for point in waits) >= 1
        assert max(point.max for point in waits) > 0.01  # someone waited for the lock's end
        sizes = metric_points(telemetry, "app_db.coalesce.batch_size", pool_name)
        assert sum(point.sum for point in sizes) >= len(emails)
        assert pool_stats(small).in_use == 0
    finally:
        await dispose(small)


async def test_timeouts_and_invalidated_connections_are_counted(
    own_database: URL, telemetry: Telemetry
) -> None:
    tight = create_engine(
        settings(
            own_database,
            database_pool_size=1,
            database_max_overflow=0,
            database_pool_timeout=0.1,
        )
    )
    pool_name = f"{tight.url.host or 'localhost'}:{tight.url.port or 5432}/{tight.url.database}"
    maker = create_sessionmaker(tight)
    try:
        async with transaction(maker) as holder:
            connection = await holder.connection()
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
            with pytest.raises(PoolTimeoutError):
                async with transaction(maker) as other:
                    await other.connection()
        admin = await asyncpg.connect(
            own_database.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
        async with transaction(maker) as db:  # the dead connection is replaced on checkout
            assert await users.get(db, uuid.uuid4()) is None
        stats = pool_stats(tight)
        assert stats.timeouts == 1
        assert stats.invalidated >= 1
        timeouts = metric_points(telemetry, "db.client.connection.timeouts", pool_name)
        invalidated = metric_points(telemetry, "app_db.pool.invalidated", pool_name)
        assert [point.value for point in timeouts] == [1]
        assert [point.value for point in invalidated] == [stats.invalidated]
    finally:
        await dispose(tight)


def _state(point: Any) -> object:
    return point.attributes.get("db.client.connection.state")


async def _until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - a pool's numbers have no event to wait on
            await asyncio.sleep(0.005)


async def test_a_slow_statement_is_logged_once_without_its_parameters(
    own_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    watched = create_engine(settings(own_database, database_slow_statement_ms=100))
    maker = create_sessionmaker(watched)
    try:
        async with transaction(maker) as db:
            await make_user(db, "slow-secret@example.com")
        caplog.clear()
        async with transaction(maker) as db:
            connection = await db.connection()
            await connection.execute(
                text("SELECT pg_sleep(0.15), CAST(:email AS text), 'inline-secret'"),
                {"email": "slow-secret@example.com"},
            )
            assert await users.get_by_email(db, "slow-secret@example.com") is not None
        records = [r for r in caplog.records if r.name == "app_db.slow"]
        assert len(records) == 1
        message = records[0].getMessage()
        assert records[0].levelno == logging.WARNING
        assert message.startswith("slow statement: ")
        assert "pg_sleep" in message
        assert "slow-secret" not in message
        assert "inline-secret" not in message  # quoted literals are masked too
        caplog.clear()

        dsn = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
        locker = await asyncpg.connect(dsn)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                lookup = asyncio.create_task(_by_email(maker, "slow-secret@example.com"))
                await asyncio.sleep(0.2)
            assert await lookup
        finally:
            await locker.close()
        records = [r for r in caplog.records if r.name == "app_db.slow"]
        assert len(records) == 1
        message = records[0].getMessage()
        assert "users.email lookups" in message or "app_db.users.get_by_email" in message
        assert "slow-secret" not in message
        caplog.clear()
    finally:
        await dispose(watched)


async def _by_email(maker: Any, email: str) -> bool:
    async with transaction(maker) as db:
        return await users.get_by_email(db, email) is not None


async def test_spans_cost_nothing_to_a_caller_without_a_session_left_open(
    db_session: AsyncSession, telemetry: Telemetry
) -> None:
    """A customer created and fetched: the spans nest as the calls do, nothing more."""
    telemetry.finished()
    created = await customers.create(db_session, CustomerCreate(name="Nested Ltd"))
    assert await customers.get(db_session, created.id) is created
    spans = telemetry.finished()
    assert [span.name for span in spans if span.name.startswith("app_db.")] == [
        "app_db.customers.create",
        "app_db.customers.get",
    ]


async def test_a_connection_the_server_dropped_is_closed_quietly(
    own_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graceful close that fails because the server went first: no ERROR, one invalidated."""
    # No spares: the overflow connection closes as it comes back (as SQLAlchemy's pool does).
    engine = create_engine(
        settings(own_database, database_pool_size=1, database_pool_overflow_idle=0)
    )
    dialect = engine.sync_engine.dialect
    terminated: list[object] = []
    real_terminate = dialect.do_terminate

    def broken_close(_connection: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def terminate(connection: Any) -> None:
        terminated.append(connection)
        real_terminate(connection)

    try:
        async with engine.connect() as first, engine.connect() as overflow:
            await first.execute(text("SELECT 1"))
            await overflow.execute(text("SELECT 1"))
            monkeypatch.setattr(dialect, "do_close", broken_close)
            monkeypatch.setattr(dialect, "do_terminate", terminate)
        # the overflow connection came back to a full pool: closed, quietly, and counted
        assert len(terminated) == 1
        assert pool_stats(engine).invalidated == 1
    finally:
        monkeypatch.undo()
        await dispose(engine)
