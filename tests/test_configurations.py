"""The API's core operations, and a load beyond the pool, under each engine configuration.

Every test here commits on a database of its own. The suite-wide ``no_warning_logs`` fixture
fails any of them that logs at WARNING or above (for example a connection the pool could not
close).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, QueuePool

from app_db import create_engine, create_sessionmaker, customers, sessions, transaction, users
from app_db.engine import dispose, read_engine
from app_db.models import CustomerCreate, CustomerUpdate, UserCreate
from tests.conftest import settings
from tests.factories import PASSWORD, make_user
from tests.pgbouncer import binary, pgbouncer

pytestmark = pytest.mark.slow

TASKS = 64
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "pool-1+0": {"settings": {"database_pool_size": 1, "database_max_overflow": 0}},
    "pool-2+8": {"settings": {"database_pool_size": 2, "database_max_overflow": 8}},
    # No pool, no cap: each task opens a connection, so stay below the server's max_connections.
    "nullpool": {"engine": {"poolclass": NullPool}, "tasks": 16},
    "pgbouncer": {"settings": {"database_pgbouncer": True}, "pgbouncer": True},
    "replica": {"replica": True},
}


@contextlib.contextmanager
def _reachable(url: URL, *, through_pgbouncer: bool) -> Iterator[URL]:
    if not through_pgbouncer:
        yield url
        return
    if binary() is None:
        pytest.skip("needs pgbouncer (apt-get install pgbouncer)")
    with pgbouncer(url) as bouncer:
        yield bouncer


@pytest.fixture(params=list(CONFIGURATIONS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return CONFIGURATIONS[request.param]


@pytest_asyncio.fixture(loop_scope="session")
async def engine(config: dict[str, Any], own_database: URL) -> AsyncIterator[AsyncEngine]:
    """An engine built by ``create_engine`` in one configuration, on a database of its own."""
    with _reachable(own_database, through_pgbouncer=config.get("pgbouncer", False)) as url:
        values = dict(config.get("settings", {}))
        if config.get("replica"):
            # The same database stands in for the replica: this is about pooling, not routing.
            values["database_read_url"] = SecretStr(url.render_as_string(hide_password=False))
        built = create_engine(settings(url, **values), **config.get("engine", {}))
        try:
            yield built
        finally:
            await dispose(built)


async def test_core_operations(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        user = await users.create(
            db, UserCreate.model_validate({"email": "Core@Example.com", "password": PASSWORD})
        )
    async with transaction(maker) as db:
        assert await users.authenticate(db, "core@example.com", PASSWORD) is not None
        token, _ = await sessions.issue(db, user.id)
    async with transaction(maker) as db:
        found = await sessions.validate(db, token)
        assert found is not None
        assert found[1].id == user.id
        by_email = await users.get_by_email(db, "CORE@example.com")
        assert by_email is not None
        assert by_email.id == user.id
        assert (await users.get(db, user.id)) is not None
        customer = await customers.create(db, CustomerCreate(name="Core Ltd", owner_id=user.id))
    async with transaction(maker) as db:
        await customers.update(db, customer.id, CustomerUpdate(name="Core plc"))
        page = await customers.list(db, search="core")
        assert [c.name for c in page.items] == ["Core plc"]
        assert await sessions.revoke(db, token)
    async with transaction(maker) as db:
        assert await sessions.validate(db, token) is None
        assert await customers.delete(db, customer.id)
        assert await customers.get(db, customer.id) is None


async def test_load_beyond_the_pool(engine: AsyncEngine, config: dict[str, Any]) -> None:
    """Readers and writers at once: each gets its answer, and the pool ends within bounds."""
    tasks = config.get("tasks", TASKS)
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        owners = [await make_user(db, f"load{n}@example.com") for n in range(8)]
        issued = [await sessions.issue(db, owners[n % 8].id) for n in range(tasks)]

    async def reader(n: int) -> None:
        token, session = issued[n]
        for _ in range(5):
            async with transaction(maker) as db:
                found = await sessions.validate(db, token)
                assert found is not None
                assert found[0].id == session.id
                user = await users.get_by_email(db, f"load{n % 8}@example.com")
                assert user is not None
                assert user.id == owners[n % 8].id

    async def writer(n: int) -> None:
        async with transaction(maker) as db:
            customer = await customers.create(db, CustomerCreate(name=f"load {n}"))
        async with transaction(maker) as db:
            assert (await customers.get(db, customer.id)) is not None

    await asyncio.gather(*(reader(n) for n in range(tasks)), *(writer(n) for n in range(tasks)))

    pools = [engine.sync_engine.pool]
    replica = read_engine(engine)
    if replica is not None:
        pools.append(replica.sync_engine.pool)
    queues = [pool for pool in pools if isinstance(pool, QueuePool)]
    # Overflow connections wait as spares for DATABASE_POOL_OVERFLOW_IDLE (tests/test_pool.py
    # shows them close): the pools stay within their caps.
    caps = [pool.size() + max(pool._max_overflow, 0) for pool in queues]
    for pool, cap in zip(queues, caps, strict=True):
        assert pool.checkedout() == 0
        assert pool.checkedin() <= cap
    async with engine.connect() as connection:
        open_connections = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        )
    assert open_connections is not None
    assert open_connections <= sum(caps) + 1  # the pools' idle connections, and this probe
