"""Pytest fixtures: a migrated test database, and a session per test that is rolled back.

Registered as the ``app_db`` pytest plugin by the package's entry point; installing app_db
never breaks a pytest run. The async fixtures run on the test's own event loop under either
runner: AnyIO's pytest plugin for tests marked ``@pytest.mark.anyio`` (FastAPI's way; any
scope of ``anyio_backend`` works), or pytest-asyncio for the others. Without a runner, only a
test that uses them fails, with one line that says what to do.

The test database is migrated with the project's ``alembic.ini`` (from
``app-db migrations init``) when there is one: the ini option ``app_db_alembic_config``, else
``alembic.ini`` in pytest's rootdir. Override the ``app_db_alembic_config`` fixture for
anything else.
"""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.migrations import PROJECT_CONFIG
from app_db.security import throttle
from app_db.testing.engines import engine_for_running_loop
from app_db.testing.runners import async_fixture, pytest_fixture_setup
from app_db.testing.server import (
    TEST_DATABASE_URL,
    NoTestServerError,
    TestServer,
    find_test_server,
    settings_for,
)

T = TypeVar("T")
CONFIG_OPTION = "app_db_alembic_config"

__all__ = ["pytest_fixture_setup", "settings_for"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        CONFIG_OPTION,
        "the Alembic config that migrates the test database (default: rootdir/alembic.ini)",
        default=None,
    )


def pytest_report_header() -> str:
    """Say where this run's test database comes from."""
    source = TEST_DATABASE_URL if os.environ.get(TEST_DATABASE_URL) else "embedded PostgreSQL"
    return f"app_db test database: a new database on the server from {source}"


def run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on an event loop of its own, in a thread of its own."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coroutine))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="app_db-fixture")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


_no_server: list[str] = []


@pytest.fixture(scope="session")
def app_db_server() -> Iterator[TestServer]:
    """Yield the server of this run: ``TEST_DATABASE_URL``, else an embedded PostgreSQL."""
    if _no_server:
        pytest.fail("no PostgreSQL for app_db's fixtures (see the first error)", pytrace=False)
    try:
        server = find_test_server()
    except NoTestServerError as exc:
        _no_server.append(str(exc))
    if _no_server:  # failed outside the except block: the message alone, once, no chain
        pytest.fail(_no_server[0], pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def app_db_alembic_config(pytestconfig: pytest.Config) -> Path | None:
    """Return the Alembic config that migrates the test database, or ``None`` for app_db's."""
    option = pytestconfig.getini(CONFIG_OPTION)
    if option:
        path = Path(str(option))
        return path if path.is_absolute() else pytestconfig.rootpath / path
    candidate = pytestconfig.rootpath / PROJECT_CONFIG
    return candidate if candidate.is_file() else None


@pytest.fixture(scope="session")
def app_db_database(app_db_server: TestServer, app_db_alembic_config: Path | None) -> Iterator[URL]:
    """Yield the URL of a database created for this run and migrated to every head."""
    url = run_in_thread(app_db_server.create_migrated_database(config_file=app_db_alembic_config))
    try:
        yield url
    finally:
        run_in_thread(app_db_server.drop_database(url))


@pytest.fixture
def db_sessionmaker(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Return a sessionmaker whose sessions join the test's transaction through savepoints.

    Code under test may ``commit()``: it releases a savepoint, and the test's rollback still
    removes everything.
    """
    return async_sessionmaker(
        bind=db_connection,
        class_=AsyncSession,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@async_fixture
async def app_db_engine(app_db_database: URL) -> AsyncEngine:
    """Return an engine on the test database, built by ``create_engine`` like the app's.

    There is one per event loop: with a loop per session, one for the whole run.
    """
    return await engine_for_running_loop(app_db_database)


@async_fixture
async def db_connection(app_db_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Yield a connection inside an outer transaction that is rolled back after the test.

    Login-throttle counters are committed on their own, outside any transaction of the code
    under test (see ``app_db.security.throttle``): those of the test are deleted after it.
    """
    counted = throttle.commits
    async with app_db_engine.connect() as connection:
        outer = await connection.begin()
        yield connection
        await outer.rollback()
    if throttle.commits != counted:
        async with app_db_engine.begin() as cleanup:
            await cleanup.exec_driver_sql("DELETE FROM throttles")


@async_fixture
async def db_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session in the test's rolled-back transaction."""
    async with db_sessionmaker() as session:
        yield session
