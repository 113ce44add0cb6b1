"""Find a PostgreSQL server for the tests and create or drop the databases they own."""

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine

from app_db.migrations import upgrade_connection
from app_db.settings import ASYNC_DRIVER, Settings
from app_db.testing.embedded import EmbeddedCluster, load_wheel

TEST_DATABASE_URL = "TEST_DATABASE_URL"
DATABASE_PREFIX = "app_db_test_"

NO_SERVER_MESSAGE = (
    "app_db's test fixtures need PostgreSQL and found none. Set TEST_DATABASE_URL to a server "
    "where the tests may create and drop databases of their own (for example "
    "postgresql://postgres@127.0.0.1:5432/postgres, or a CI service container), or install "
    "app-db[testing] (or app-db[dev]), which brings an embedded PostgreSQL on Linux "
    "x86_64/aarch64, macOS arm64 and Windows amd64."
)


class NoTestServerError(RuntimeError):
    """Raise when neither ``TEST_DATABASE_URL`` nor the embedded server is available."""


class TestServer:
    """A server the tests may use: they create uniquely named databases there and drop them."""

    __test__ = False

    def __init__(self, admin_url: URL, description: str, close: Callable[[], None]) -> None:
        self.admin_url = admin_url
        self.description = description
        self._close = close

    def close(self) -> None:
        """Release the server (stop it, when the run started it)."""
        self._close()

    async def create_database(self, label: str = "") -> URL:
        """Create an empty database with a fresh random name and return its URL."""
        if not label.isidentifier() and label:
            raise ValueError("a database label must be an identifier")
        name = f"{DATABASE_PREFIX}{label}{secrets.token_hex(6)}"
        await self._run(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name)

    async def create_migrated_database(
        self, label: str = "", *, config_file: Path | None = None
    ) -> URL:
        """Create a database as ``create_database`` does and migrate it to every head.

        ``config_file`` is a project's ``alembic.ini``; without it, app_db's own revision.
        """
        url = await self.create_database(label)
        try:
            await migrate(url, config_file=config_file)
        except BaseException:
            await self.drop_database(url)
            raise
        return url

    async def drop_database(self, url: URL) -> None:
        """Drop a database that ``create_database`` made, closing its open connections."""
        name = url.database
        if name is None or not name.startswith(DATABASE_PREFIX):
            raise ValueError("refusing to drop a database the tests did not create")
        await self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _run(self, statement: str) -> None:
        engine = create_async_engine(
            self.admin_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()


async def migrate(url: URL, *, config_file: Path | None = None) -> None:
    """Upgrade the database at ``url`` to every head: app_db's, and the project's if given."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_connection, config_file=config_file)
    finally:
        await engine.dispose()


def settings_for(url: URL) -> Settings:
    """Return settings for ``url`` alone, ignoring any ``.env`` file."""
    secret = SecretStr(url.render_as_string(hide_password=False))
    return Settings(_env_file=None, database_url=secret)


def find_test_server() -> TestServer:
    """Return the server named by ``TEST_DATABASE_URL``, else start an embedded one."""
    raw = os.environ.get(TEST_DATABASE_URL)
    if raw:
        return TestServer(_parse(raw), TEST_DATABASE_URL, lambda: None)
    wheel = load_wheel()
    if wheel is None:
        raise NoTestServerError(NO_SERVER_MESSAGE)
    cluster = EmbeddedCluster(wheel)
    return TestServer(cluster.admin_url, "embedded PostgreSQL", cluster.stop)


def _parse(raw: str) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise NoTestServerError("TEST_DATABASE_URL is not a valid URL") from None
    if url.drivername.partition("+")[0] not in ("postgres", "postgresql"):
        raise NoTestServerError("TEST_DATABASE_URL must be a postgres:// or postgresql:// URL")
    return url.set(drivername=ASYNC_DRIVER)
