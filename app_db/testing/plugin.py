"""Pytest fixtures: a migrated test database, and a session per test that is rolled back.

Registered as the ``app_db`` pytest plugin. Async fixtures share the session's event loop,
so set ``asyncio_default_fixture_loop_scope`` and ``asyncio_default_test_loop_scope`` to
``"session"`` in the pytest configuration of a project that uses them.
"""

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.engine import create_engine
from app_db.settings import Settings
from app_db.testing.server import (
    TEST_DATABASE_URL,
    NoTestServerError,
    TestServer,
    find_test_server,
)


def settings_for(url: URL) -> Settings:
    """Return settings for ``url`` alone, ignoring any ``.env`` file."""
    secret = SecretStr(url.render_as_string(hide_password=False))
    return Settings(_env_file=None, database_url=secret)


@pytest.fixture(scope="session")
def app_db_server() -> Iterator[TestServer]:
    """Yield the server of this run: ``TEST_DATABASE_URL``, else an embedded PostgreSQL."""
    try:
        server = find_test_server()
    except NoTestServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app_db_database(app_db_server: TestServer) -> AsyncIterator[URL]:
    """Yield the URL of a database created for this run and migrated to head with Alembic."""
    url = await app_db_server.create_migrated_database()
    try:
        yield url
    finally:
        await app_db_server.drop_database(url)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app_db_engine(app_db_database: URL) -> AsyncIterator[AsyncEngine]:
    """Yield an engine on the test database, built by ``create_engine`` like the app's."""
    engine = create_engine(settings_for(app_db_database))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def db_connection(app_db_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Yield a connection inside an outer transaction that is rolled back after the test."""
    async with app_db_engine.connect() as connection:
        outer = await connection.begin()
        yield connection
        await outer.rollback()


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


@pytest_asyncio.fixture(loop_scope="session")
async def db_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session in the test's rolled-back transaction."""
    async with db_sessionmaker() as session:
        yield session


def pytest_report_header() -> str:
    """Say where this run's test database comes from."""
    source = TEST_DATABASE_URL if os.environ.get(TEST_DATABASE_URL) else "embedded PostgreSQL"
    return f"app_db test database: a new database on the server from {source}"
