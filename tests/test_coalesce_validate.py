"""``sessions.validate`` coalesced: each caller gets its own answer, the touch stays throttled."""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    DatabaseUnavailableError,
    SessionSettings,
    create_engine,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
)
from app_db import coalesce as batching
from app_db.engine import dispose, read_engine
from app_db.security.tokens import new_token
from app_db.session_lookups import for_policy
from tests.conftest import settings
from tests.factories import make_user
from tests.tcp_proxy import Proxy
from tests.test_coalesce import until_a_batch_waits_on

pytestmark = pytest.mark.slow
POLICY = SessionSettings(
    _env_file=None,
    idle_timeout=timedelta(days=1),
    max_lifetime=timedelta(days=2),
    touch_interval=timedelta(hours=1),
)
LOOKUPS = for_policy(POLICY.idle_timeout, POLICY.max_lifetime, POLICY.touch_interval)
Answer = tuple[uuid.UUID, uuid.UUID] | None


@dataclass
class Tokens:
    expected: dict[str, Answer]
    """Every token, valid or not, with the (session id, user id) validate must return."""
    valid: list[str]


@pytest_asyncio.fixture(loop_scope="session")
async def tokens(engine: AsyncEngine) -> Tokens:
    """Valid, expired, revoked and unknown tokens, and tokens of an inactive user."""
    expected: dict[str, Answer] = {}
    valid = []
    async with transaction(create_sessionmaker(engine)) as db:
        for n in range(20):
            user = await make_user(db, f"validate{n}@example.com")
            for kind in ("valid", "valid", "expired", "revoked"):
                token, session = await sessions.issue(db, user.id, settings=POLICY)
                expected[token] = (session.id, user.id) if kind == "valid" else None
                if kind == "valid":
                    valid.append(token)
                elif kind == "revoked":
                    assert await sessions.revoke(db, token)
                else:
                    connection = await db.connection()
                    await connection.execute(
                        text(
                            "UPDATE sessions SET created_at = now() - interval '2 days',"
                            " expires_at = now() - interval '1 second'"
                            " WHERE id = :id"
                        ),
                        {"id": session.id},
                    )
        inactive = await make_user(db, "validate-inactive@example.com", active=False)
        for _ in range(5):
            token, _session = await sessions.issue(db, inactive.id, settings=POLICY)
            expected[token] = None
    for _ in range(20):
        expected[new_token()] = None  # well formed, never issued
    expected["not a token"] = None
    return Tokens(expected, valid)


async def check(maker: async_sessionmaker[AsyncSession], token: str) -> Answer:
    async with transaction(maker) as db:
        found = await sessions.validate(db, token, settings=POLICY)
    if found is None:
        return None
    session, user = found
    assert session.user_id == user.id
    return session.id, user.id


def sizes(engine: AsyncEngine) -> list[int]:
    found = batching.batcher(engine, LOOKUPS.validate)
    assert found is not None
    return found.sizes


async def test_a_thousand_callers_each_get_their_own_answer(
    engine: AsyncEngine, tokens: Tokens
) -> None:
    maker = create_sessionmaker(engine)
    every = list(tokens.expected)
    asked = [every[(n * 7) % len(every)] for n in range(1000)]
    answers = await asyncio.gather(*(check(maker, token) for token in asked))

    for token, answer in zip(asked, answers, strict=True):
        assert answer == tokens.expected[token]
    seen = sizes(engine)
    assert sum(seen) == sum(1 for token in asked if token != "not a token")
    assert max(seen) > 1  # they did share statements
    assert max(seen) <= 64


async def test_a_due_touch_happens_once_per_session_however_many_batches_ask(
    engine: AsyncEngine, tokens: Tokens
) -> None:
    async with engine.begin() as connection:
        for statement in (
            "CREATE TABLE touches (session_id uuid NOT NULL)",
            "CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO touches VALUES (NEW.id); RETURN NEW; END $$",
            "CREATE TRIGGER log_touch AFTER UPDATE ON sessions FOR EACH ROW"
            " EXECUTE FUNCTION log_touch()",
            "UPDATE sessions SET created_at = created_at - interval '3 hours',"
            " last_seen_at = now() - interval '2 hours'",
            "TRUNCATE touches",
        ):
            await connection.execute(text(statement))
    maker = create_sessionmaker(engine)
    asked = [tokens.valid[n % len(tokens.valid)] for n in range(600)]  # 15 times each
    before = len(sizes(engine))
    answers = await asyncio.gather(*(check(maker, token) for token in asked))

    assert answers == [tokens.expected[token] for token in asked]
    assert len(sizes(engine)) - before > 1  # several batches asked for the same sessions
    async with engine.connect() as connection:
        counts = (
            await connection.execute(
                text("SELECT session_id, count(*) FROM touches GROUP BY session_id")
            )
        ).all()
        stale = await connection.scalar(
            text(
                "SELECT count(*) FROM sessions WHERE last_seen_at < now() - interval '1 hour'"
                " AND revoked_at IS NULL AND expires_at > now()"
            )
        )
    assert sorted(count for _, count in counts) == [1] * len(tokens.valid)
    assert {session_id for session_id, _ in counts} == {
        answer[0] for answer in tokens.expected.values() if answer is not None
    }
    assert stale == 5  # the inactive user's sessions: never validated, never touched


async def test_a_cancelled_caller_leaves_the_others_alone(
    engine: AsyncEngine, tokens: Tokens
) -> None:
    maker = create_sessionmaker(engine)
    tasks = [asyncio.create_task(check(maker, token)) for token in tokens.valid]
    await asyncio.sleep(0)  # all are waiting for their batch
    tasks[7].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[7], asyncio.CancelledError)
    for n, token in enumerate(tokens.valid):
        if n != 7:
            assert results[n] == tokens.expected[token]
    assert await check(maker, tokens.valid[7]) == tokens.expected[tokens.valid[7]]


async def test_a_connection_killed_mid_batch_fails_the_batch_typed_then_recovers(
    tokens: Tokens, own_database: URL
) -> None:
    """The batch's connection dies (the proxy to the server goes down) while the batch waits."""
    proxy = Proxy(own_database)
    await proxy.start()
    through = create_engine(settings(proxy.url))
    maker = create_sessionmaker(through)
    dsn = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
    locker = await asyncpg.connect(dsn)
    try:
        first, *batch = tokens.valid[:21]
        assert await check(maker, first) == tokens.expected[first]
        async with locker.transaction():
            await locker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
            tasks = [asyncio.create_task(check(maker, token)) for token in batch]
            await until_a_batch_waits_on(locker)
            await proxy.stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
        await proxy.start()
        assert await check(maker, batch[0]) == tokens.expected[batch[0]]
        found = batching.batcher(through, LOOKUPS.validate)
        assert found is not None
        assert max(found.sizes) > 1  # the failed lookups had shared a statement
    finally:
        await locker.close()
        await dispose(through)
        await proxy.stop()


async def test_inside_a_transaction_that_holds_a_connection_each_validate_runs_alone(
    engine: AsyncEngine, tokens: Tokens
) -> None:
    before = list(sizes(engine)) if batching.batcher(engine, LOOKUPS.validate) else []
    async with create_sessionmaker(engine)() as db, db.begin():
        await customers.create(db, CustomerCreate(name="holds a connection"))
        for token, answer in tokens.expected.items():
            found = await sessions.validate(db, token, settings=POLICY)
            assert (None if found is None else (found[0].id, found[1].id)) == answer
        await db.rollback()
    assert (list(sizes(engine)) if batching.batcher(engine, LOOKUPS.validate) else []) == before


async def test_the_setting_turns_it_off(own_database: URL, tokens: Tokens) -> None:
    off = create_engine(settings(own_database, database_coalesce_max_batch=0))
    try:
        maker = create_sessionmaker(off)
        answers = await asyncio.gather(*(check(maker, token) for token in tokens.expected))
        assert answers == list(tokens.expected.values())
        assert batching.batcher(off, LOOKUPS.validate) is None
    finally:
        await dispose(off)


async def test_with_a_read_replica_validate_still_batches_on_the_primary(
    own_database: URL, tokens: Tokens
) -> None:
    """The replica here is the primary itself: what matters is which statements go where."""
    url = own_database.render_as_string(hide_password=False)
    both = create_engine(settings(own_database, database_read_url=url))
    try:
        replica = read_engine(both)
        assert replica is not None
        maker = create_sessionmaker(both)
        answers = await asyncio.gather(*(check(maker, token) for token in tokens.expected))
        assert answers == list(tokens.expected.values())
        on_primary = batching.batcher(both, LOOKUPS.validate)
        assert on_primary is not None
        assert sum(on_primary.sizes) == len(tokens.expected) - 1  # all but the malformed one
        assert max(on_primary.sizes) > 1
        assert batching.batch_sizes(replica) == {}
    finally:
        await dispose(both)


async def test_given_the_engine_validate_answers_alike_in_batches_and_builds_no_session(
    engine: AsyncEngine, tokens: Tokens
) -> None:
    every = list(tokens.expected)
    asked = [every[(n * 7) % len(every)] for n in range(300)]
    answers = await asyncio.gather(
        *(sessions.validate(engine, token, settings=POLICY) for token in asked)
    )

    for token, answer in zip(asked, answers, strict=True):
        if answer is None:
            assert tokens.expected[token] is None
            continue
        session, user = answer
        assert (session.id, user.id) == tokens.expected[token]
        assert session.user_id == user.id
        assert inspect(session).detached  # persistent, in no session
        assert inspect(user).detached
        assert inspect(user).key == (type(user), (user.id,), None)
    assert max(sizes(engine)) > 1  # they shared statements
    maker = create_sessionmaker(engine)
    found = await sessions.validate(engine, tokens.valid[0], settings=POLICY)
    assert found is not None
    async with transaction(maker) as db:  # joined to a session, a change flushes as an UPDATE
        user = found[1]
        db.add(user)
        user.display_name = "changed on a detached login"
    async with transaction(maker) as db:
        again = await sessions.validate(db, tokens.valid[0], settings=POLICY)
        assert again is not None
        assert again[1].display_name == "changed on a detached login"
