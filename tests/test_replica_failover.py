"""A read replica that goes away: reads fall back to the primary, and return when it is back."""

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db import create_engine, create_sessionmaker, health, sessions, transaction, users
from app_db.cluster.replica import replica_of
from app_db.engine import dispose
from tests.conftest import settings
from tests.factories import make_user
from tests.tcp_proxy import Proxy

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(own_database: URL) -> AsyncIterator[Proxy]:
    """The replica: the test's own database, reached through a proxy the test can stop."""
    through = Proxy(own_database)
    await through.start()
    try:
        yield through
    finally:
        await through.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(own_database: URL, proxy: Proxy) -> AsyncIterator[AsyncEngine]:
    replica_url = SecretStr(proxy.url.render_as_string(hide_password=False))
    built = create_engine(settings(own_database, database_read_url=replica_url))
    try:
        yield built
    finally:
        await dispose(built)


async def test_reads_fall_back_to_the_primary_and_return_to_the_replica(
    engine: AsyncEngine, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        user = await make_user(db, "replica.down@example.com")
        token, _ = await sessions.issue(db, user.id)
    replica = replica_of(engine)
    assert replica is not None
    await replica.measure(engine)  # the lag is known: within DATABASE_READ_MAX_LAG

    async with transaction(maker) as db:
        assert await users.get_by_email(db, "replica.down@example.com") is not None
    assert replica.reads == 1

    await proxy.stop()
    await replica.engine.dispose()  # the pool's idle connections died with the replica
    for _ in range(20):
        async with transaction(maker) as db:
            found = await users.get_by_email(db, "replica.down@example.com")
            assert found is not None
            assert found.id == user.id
            assert await sessions.validate(db, token) is not None
    down = [r for r in caplog.records if r.name == "app_db.cluster.replica"]
    assert [(r.levelno, "unreachable" in r.getMessage()) for r in down] == [(logging.WARNING, True)]
    assert replica.fallbacks == 1  # tried once; the back-off keeps the others off it
    report = await health.check(engine)
    assert report.ok
    assert report.replica is not None
    assert not report.replica.ok
    assert report.replica.reads_on_primary

    replica.retry_at = 0.0  # the back-off has run out, and the replica is still down
    async with transaction(maker) as db:
        assert await users.get_by_email(db, "replica.down@example.com") is not None
    assert replica.fallbacks == 2
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1

    await proxy.start()
    replica.retry_at = 0.0
    async with transaction(maker) as db:
        assert await users.get_by_email(db, "replica.down@example.com") is not None
    assert replica.reads == 2
    assert replica.down_since is None
    report = await health.check(engine)
    assert report.replica is not None
    assert report.replica.ok
    assert not report.replica.reads_on_primary
    caplog.clear()  # the one WARNING above was expected
