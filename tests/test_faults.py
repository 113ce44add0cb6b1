"""Faults against the real server, each bounded in time: the library recovers by itself.

These tests commit, so each runs on a database of its own, migrated and dropped afterwards.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event, pool, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DatabaseUnavailableError,
    PoolTimeoutError,
    StatementTimeoutError,
    create_engine,
    create_sessionmaker,
    customers,
    fastpath,
    sessions,
    transaction,
    users,
)
from app_db.errors import AppDBError
from app_db.models import CustomerCreate
from app_db.settings import Settings
from tests.conftest import settings
from tests.factories import make_user

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]


async def terminate_backends(url: URL) -> int:
    admin = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with admin.connect() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return int(killed or 0)
    finally:
        await admin.dispose()


async def seeded_token(engine: AsyncEngine) -> str:
    async with transaction(create_sessionmaker(engine)) as db:
        user = await make_user(db)
        token, _ = await sessions.issue(db, user.id)
    return token


@pytest.mark.timed
async def test_killed_backends_are_replaced_without_a_restart(own_database: URL) -> None:
    engine = create_engine(settings(own_database, database_pool_size=5))
    maker = create_sessionmaker(engine)
    token = await seeded_token(engine)
    outcomes: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                async with transaction(maker) as db:
                    if i % 2:
                        assert await sessions.validate(db, token) is not None
                    else:
                        await customers.create(db, CustomerCreate(name=f"load {n}-{i}"))
                outcomes.append((time.monotonic(), "ok"))
            except AppDBError as exc:
                outcomes.append((time.monotonic(), type(exc).__name__))

    try:
        async with asyncio.timeout(20):
            tasks = [asyncio.create_task(client(n)) for n in range(10)]
            await asyncio.sleep(0.5)
            killed_at = time.monotonic()
            killed = await terminate_backends(own_database)
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await engine.dispose()

    failures = [(t, kind) for t, kind in outcomes if kind != "ok"]
    after = [kind for t, kind in outcomes if t > killed_at + 0.5]
    window_ms = (max(t for t, _ in failures) - killed_at) * 1000 if failures else 0.0
    print(  # noqa: T201 - the figures the README quotes
        f"\nkilled {killed} backends; {len(outcomes)} requests, {len(failures)} failed "
        f"({sorted({k for _, k in failures})}), failure window {window_ms:.0f} ms"
    )
    assert killed >= 1
    assert {kind for _, kind in failures} <= {"DatabaseUnavailableError"}
    assert after
    assert set(after) == {"ok"}


async def test_a_write_whose_connection_died_before_its_begin_drops_it(
    own_database: URL,
) -> None:
    """``issue`` begins the transaction itself on the session's connection: a dead one is a
    typed error, and is dropped from the pool instead of going back to it."""
    engine = create_engine(settings(own_database))
    maker = create_sessionmaker(engine)
    dropped: list[object] = []
    event.listen(engine.sync_engine.pool, "invalidate", lambda *args: dropped.append(args))
    try:
        async with transaction(maker) as db:
            user = await make_user(db)

        async def issue_on_a_dead_connection() -> None:
            async with transaction(maker) as db:
                await db.connection()  # held, and nothing sent on it yet: no BEGIN
                assert await terminate_backends(own_database) >= 1
                await sessions.issue(db, user.id)

        with pytest.raises(DatabaseUnavailableError):
            await issue_on_a_dead_connection()
        assert len(dropped) == 1
        async with transaction(maker) as db:
            token, _ = await sessions.issue(db, user.id)
        async with transaction(maker) as db:
            assert await sessions.validate(db, token) is not None
    finally:
        await engine.dispose()


async def test_pool_exhaustion_is_a_typed_timeout(own_database: URL) -> None:
    engine = create_engine(
        settings(own_database, database_pool_size=2, database_max_overflow=0),
        pool_timeout=0.5,
    )
    maker = create_sessionmaker(engine)
    holders = [maker() for _ in range(2)]
    try:
        for holder in holders:
            await holder.connection()
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError):
            async with asyncio.timeout(5), transaction(maker) as db:
                await customers.get(db, uuid.uuid4())
        with pytest.raises(PoolTimeoutError):
            async with asyncio.timeout(5), transaction(maker) as db:
                await sessions.validate(db, "x" * 43)
        assert time.monotonic() - started < 3
    finally:
        for holder in holders:
            await holder.close()
        await engine.dispose()


async def test_statement_timeout_is_typed_and_the_connection_survives(own_database: URL) -> None:
    engine = create_engine(
        settings(own_database, database_statement_timeout_ms=200, database_pool_size=1)
    )
    maker = create_sessionmaker(engine)
    try:
        with pytest.raises(StatementTimeoutError):
            async with transaction(maker) as db:
                await (await db.connection()).execute(text("SELECT pg_sleep(2)"))
        async with transaction(maker) as db:
            connection = await db.connection()
            assert await connection.scalar(text("SELECT 1")) == 1
            assert await connection.scalar(text("SHOW statement_timeout")) == "200ms"
    finally:
        await engine.dispose()


async def session_state(engine: AsyncEngine) -> tuple[Any, ...]:
    """Check out the pooled connection: no transaction open on it, no cancelled query running."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        before = driver.is_in_transaction()
        sleeping = await driver.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
        )
        return before, driver.is_in_transaction(), sleeping


@pytest.mark.parametrize("where", ["orm", "driver"])
async def test_cancelled_task_leaves_a_clean_pool(own_database: URL, where: str) -> None:
    engine = create_engine(settings(own_database, database_pool_size=1, database_max_overflow=0))
    maker = create_sessionmaker(engine)

    async def slow(db: AsyncSession) -> None:
        if where == "orm":
            await customers.create(db, CustomerCreate(name="in a transaction"))
            await (await db.connection()).execute(text("SELECT pg_sleep(5)"))
        else:
            await fastpath.fetch(db, "SELECT pg_sleep(5)")

    async def request() -> None:
        async with transaction(maker) as db:
            await slow(db)

    try:
        task = asyncio.create_task(request())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            state = await session_state(engine)
            async with transaction(maker) as db:
                page = await customers.list(db, search="in a transaction")
        assert state == (False, False, 0)
        assert page.items == []
    finally:
        await engine.dispose()


async def test_unreachable_server_is_a_typed_error() -> None:
    engine = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr("postgresql://app:pw@127.0.0.1:1/app"),
            database_connect_timeout=2,
        )
    )
    try:
        with pytest.raises(DatabaseUnavailableError):
            async with asyncio.timeout(10), transaction(create_sessionmaker(engine)) as db:
                await users.get_by_email(db, "a@example.com")
    finally:
        await engine.dispose()


async def test_a_server_that_refuses_the_login_is_a_typed_error(app_db_database: URL) -> None:
    """An unknown role or database: ``DatabaseUnavailableError``, never a raw ``DBAPIError``."""
    for url in (
        app_db_database.set(username="no_such_role_app_db"),
        app_db_database.set(database="app_db_test_no_such_database"),
    ):
        engine = create_engine(settings(url))
        try:
            for call in (
                lambda db: users.get_by_email(db, "a@example.com"),
                lambda db: customers.create(db, CustomerCreate(name="refused")),
            ):
                with pytest.raises(DatabaseUnavailableError):
                    async with transaction(create_sessionmaker(engine)) as db:
                        await call(db)
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Yield the port of a server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def use_in_transaction(port: int, statement: str) -> None:
    engine = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr(f"postgresql://app:pw@127.0.0.1:{port}/app"),
            database_connect_timeout=0.5,
        )
    )
    try:
        async with asyncio.timeout(10), transaction(create_sessionmaker(engine)) as db:
            if statement == "api":
                await users.get_by_email(db, "a@example.com")
            else:
                await (await db.connection()).execute(text("SELECT 1"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("statement", ["api", "own SQL"])
async def test_driver_connect_errors_stay_typed_in_a_transaction(statement: str) -> None:
    """Refused (ConnectionRefusedError) or unanswered (TimeoutError), raw from asyncpg."""
    with pytest.raises(DatabaseUnavailableError) as refused:
        await use_in_transaction(1, statement)
    async with silent_server() as port:
        with pytest.raises(DatabaseUnavailableError) as unanswered:
            await use_in_transaction(port, statement)

    assert isinstance(refused.value.__cause__, ConnectionRefusedError)
    assert isinstance(unanswered.value.__cause__, TimeoutError)
