"""Hung servers (every process stopped with SIGSTOP, as a frozen VM or a partition would leave
them): reads leave a hung standby within the read timeout, a hung primary fails typed within
the command timeout, and a hung first host of a list costs one connect timeout."""

import asyncio
import logging
import time

import pytest
from pydantic import SecretStr

from app_db import (
    CustomerCreate,
    DatabaseUnavailableError,
    Settings,
    create_engine,
    create_sessionmaker,
    customers,
    transaction,
    users,
)
from app_db.engine import dispose
from app_db.testing.replication import ReplicatedPair
from tests.factories import make_user
from tests.replicas import both, caught_up, replica_state

pytestmark = [pytest.mark.slow, pytest.mark.timed, pytest.mark.xdist_group("servers")]
FROZEN_FOR = 5.0
READERS = 32


async def test_a_frozen_standby_delays_no_read_beyond_the_read_timeout(
    replicated: ReplicatedPair, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(both(replicated))
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        emails = [(await make_user(db, f"reader{n}@example.com")).email for n in range(READERS)]
        await customers.create(db, CustomerCreate(name="Read while frozen"))
    await caught_up(replicated)
    replica = replica_state(engine)
    await replica.measure(engine)
    latencies: list[float] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def reader(email: str) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with transaction(maker) as db:
                    assert await users.get_by_email(db, email) is not None
                    page = await customers.list(db, search="Read while frozen")
                    assert len(page.items) == 1
            except Exception as exc:  # counted, then asserted on
                failures.append(exc)
            latencies.append(time.perf_counter() - started)

    readers = [asyncio.create_task(reader(email)) for email in emails]
    try:
        await asyncio.sleep(0.5)
        served_before = replica.reads
        replicated.standby.freeze()
        await asyncio.sleep(FROZEN_FOR)
        replicated.standby.thaw()
        await asyncio.sleep(0.5)
    finally:
        replicated.standby.thaw()
        stop.set()
        await asyncio.gather(*readers)
    replica.retry_at = 0.0  # the back-off has run out: the standby answers again
    async with transaction(maker) as db:
        await users.get_by_email(db, emails[0])
    await dispose(engine)

    assert served_before > 0
    assert failures == []
    assert len(latencies) > READERS * 10
    assert max(latencies) < 5.0
    # (asyncpg may also leave an unretrieved future behind a connect it was cancelled in:
    # asyncio's own ERROR record, not the database stack's.)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "asyncio"]
    assert [r.getMessage().split(":")[0] for r in warnings] == [
        "read replica unreachable (DatabaseUnavailableError"
    ]
    assert "no answer within 2 s (DATABASE_READ_TIMEOUT)" in warnings[0].getMessage()
    assert replica.down_since is None
    caplog.clear()


async def test_a_hung_primary_fails_typed_within_the_command_timeout(
    replicated: ReplicatedPair,
) -> None:
    # statement_timeout 1 s: the client waits 3 s (DATABASE_COMMAND_TIMEOUT's default)
    engine = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr(replicated.primary.dsn),
            database_statement_timeout_ms=1000,
            database_connect_timeout=2,
        )
    )
    maker = create_sessionmaker(engine)

    async def write() -> None:
        async with transaction(maker) as db:
            await customers.create(db, CustomerCreate(name="Hung"))

    async def read() -> None:
        async with transaction(maker) as db:
            await users.get_by_email(db, "nobody@example.com")

    await asyncio.gather(write(), read())  # two pooled connections
    replicated.primary.freeze()
    try:
        took = []
        for request in (write, read, write):  # a statement hangs; then new connections do
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError):
                await request()
            took.append(time.monotonic() - started)
    finally:
        replicated.primary.thaw()
    await write()
    await read()
    await dispose(engine)
    assert max(took) < 4.5  # 3 s for an answer, 2 s for a new connection, plus scheduling


async def test_a_hung_first_host_costs_one_connect_timeout_then_goes_last(
    replicated: ReplicatedPair,
) -> None:
    hung, healthy = replicated.standby, replicated.primary
    url = f"postgresql://postgres@127.0.0.1:{hung.port},127.0.0.1:{healthy.port}/postgres"
    engine = create_engine(
        Settings(_env_file=None, database_url=SecretStr(url), database_connect_timeout=1)
    )
    maker = create_sessionmaker(engine)

    async def request() -> float:
        started = time.monotonic()
        async with transaction(maker) as db:
            await customers.create(db, CustomerCreate(name="Second host"))
        await engine.dispose()  # the next request needs a new connection
        return time.monotonic() - started

    hung.freeze()
    try:
        first, later = await request(), await request()
    finally:
        hung.thaw()
    await dispose(engine)
    assert 1.0 <= first < 3.0  # asyncpg's one timeout for all hosts would have failed here
    assert later < 0.9
