"""Concurrent lookups coalesced into one statement per batch, with the per-call semantics."""

import asyncio
import uuid

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    DatabaseUnavailableError,
    create_engine,
    create_sessionmaker,
    customers,
    fastpath,
    transaction,
    users,
)
from app_db import coalesce as batching
from app_db.engine import dispose
from app_db.settings import Settings
from tests.conftest import settings
from tests.factories import make_user
from tests.tcp_proxy import Proxy

pytestmark = pytest.mark.slow
USERS = 40


@pytest_asyncio.fixture(loop_scope="session")
async def people(engine: AsyncEngine) -> dict[str, uuid.UUID]:
    async with transaction(create_sessionmaker(engine)) as db:
        made = [await make_user(db, f"batch{n}@example.com") for n in range(USERS)]
    return {user.email: user.id for user in made}


def sizes(engine: AsyncEngine, lookup: batching.Lookup) -> list[int]:
    found = batching.batcher(engine, lookup)
    assert found is not None
    return found.sizes


async def by_email(maker: async_sessionmaker[AsyncSession], email: str) -> uuid.UUID | None:
    async with transaction(maker) as db:
        user = await users.get_by_email(db, email)
        return None if user is None else user.id


async def test_a_thousand_callers_each_get_their_own_answer(
    engine: AsyncEngine, people: dict[str, uuid.UUID]
) -> None:
    maker = create_sessionmaker(engine)
    asked = [f"BATCH{n % (2 * USERS)}@example.com" for n in range(1000)]  # half unknown
    answers = await asyncio.gather(*(by_email(maker, email) for email in asked))

    for email, answer in zip(asked, answers, strict=True):
        assert answer == people.get(email.lower())
    seen = sizes(engine, users._BY_EMAIL)
    assert sum(seen) == 1000
    assert max(seen) > 1  # they did share statements
    assert max(seen) <= 64


async def test_get_by_id_joins_the_session_and_keeps_its_instance(
    engine: AsyncEngine, people: dict[str, uuid.UUID]
) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        customer = await customers.create(db, CustomerCreate(name="Batched Ltd"))
    ids = list(people.values())

    async def both(user_id: uuid.UUID) -> None:
        async with maker() as db:
            user = await users.get(db, user_id)
            assert user is not None
            assert user.id == user_id
            assert user in db
            assert await users.get(db, user_id) is user  # from the identity map
            found = await customers.get(db, customer.id)
            assert found is not None
            assert found.name == "Batched Ltd"
            assert await customers.get(db, uuid.uuid4()) is None

    await asyncio.gather(*(both(user_id) for user_id in ids))
    assert max(sizes(engine, users._BY_ID)) > 1


async def test_a_cancelled_caller_leaves_the_others_alone(
    engine: AsyncEngine, people: dict[str, uuid.UUID]
) -> None:
    maker = create_sessionmaker(engine)
    emails = list(people)
    tasks = [asyncio.create_task(by_email(maker, email)) for email in emails]
    await asyncio.sleep(0)  # all are waiting for their batch
    tasks[7].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[7], asyncio.CancelledError)
    for n, email in enumerate(emails):
        if n != 7:
            assert results[n] == people[email]
    assert await by_email(maker, emails[7]) == people[emails[7]]


async def test_a_connection_killed_mid_batch_fails_the_batch_typed_then_recovers(
    people: dict[str, uuid.UUID], own_database: URL
) -> None:
    """The batch's connection dies (the proxy to the server goes down) while the batch waits."""
    proxy = Proxy(own_database)
    await proxy.start()
    through = create_engine(settings(proxy.url))
    maker = create_sessionmaker(through)
    emails = list(people)[:20]
    dsn = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
    locker = await asyncpg.connect(dsn)
    try:
        assert await by_email(maker, emails[0]) == people[emails[0]]
        async with locker.transaction():
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            tasks = [asyncio.create_task(by_email(maker, email)) for email in emails]
            await until_a_batch_waits_on(locker)
            await proxy.stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
        await proxy.start()
        assert await by_email(maker, emails[1]) == people[emails[1]]
    finally:
        await locker.close()
        await dispose(through)
        await proxy.stop()


async def until_a_batch_waits_on(locker: asyncpg.Connection) -> None:
    async with asyncio.timeout(10):
        while True:
            waiting = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)


async def test_inside_a_transaction_that_holds_a_connection_each_lookup_runs_alone(
    engine: AsyncEngine, people: dict[str, uuid.UUID]
) -> None:
    before = list(sizes(engine, users._BY_EMAIL))
    async with create_sessionmaker(engine)() as db, db.begin():
        await customers.create(db, CustomerCreate(name="holds a connection"))
        for email, user_id in people.items():
            found = await users.get_by_email(db, email)
            assert found is not None
            assert found.id == user_id
        await db.rollback()
    assert sizes(engine, users._BY_EMAIL) == before


async def test_the_setting_turns_it_off(own_database: URL, people: dict[str, uuid.UUID]) -> None:
    off = create_engine(settings(own_database, database_coalesce_max_batch=0))
    try:
        maker = create_sessionmaker(off)
        answers = await asyncio.gather(*(by_email(maker, email) for email in people))
        assert answers == list(people.values())
        assert batching.batcher(off, users._BY_EMAIL) is None
    finally:
        await dispose(off)


def test_pgbouncer_mode_runs_each_lookup_alone() -> None:
    bouncer = create_engine(
        Settings(_env_file=None, database_url="postgresql://h/db", database_pgbouncer=True)
    )
    options = bouncer.sync_engine.get_execution_options()
    assert options[batching.COALESCE] == 0


async def test_small_batches_keep_one_plan_instead_of_planning_at_every_call(
    own_database: URL, people: dict[str, uuid.UUID]
) -> None:
    # One pooled connection, so that its prepared statements are the ones looked at.
    one = create_engine(settings(own_database, database_pool_size=1, database_max_overflow=0))
    try:
        async with one.begin() as connection:  # a table as large as one in use
            await connection.exec_driver_sql(
                "INSERT INTO users (email, password_hash)"
                " SELECT 'many' || i || '@example.com', 'h' FROM generate_series(1, 5000) AS i"
            )
        async with one.begin() as connection:  # committed, as statistics must be to count
            await connection.exec_driver_sql("ANALYZE users")
        maker = create_sessionmaker(one)
        emails = list(people)
        for round_ in range(12):  # batches of two or three keys
            asked = emails[round_ : round_ + 3]
            assert await asyncio.gather(*(by_email(maker, e) for e in asked)) == [
                people[e] for e in asked
            ]
        assert max(sizes(one, users._BY_EMAIL)) > 1
        plans = await fastpath.run_borrowed(
            one,
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            (users._BY_EMAIL.batch_sql,),
        )
        assert plans[0]["generic_plans"] > 0, plans
    finally:
        await dispose(one)
