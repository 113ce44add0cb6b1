"""Concurrency and integrity: racing requests, each in its own committed transaction."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DuplicateEmailError,
    InvalidInputError,
    create_engine,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
    users,
)
from app_db.models import UserCreate
from app_db.security import passwords
from app_db.settings import SessionSettings
from tests.conftest import settings
from tests.factories import make_user

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(loop_scope="session")
async def engine(own_database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings(own_database, database_pool_size=10))
    try:
        yield engine
    finally:
        await engine.dispose()


async def scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as connection:
        return await connection.scalar(text(sql), params)


async def test_concurrent_signups_with_one_email_make_one_user(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 sign-ups of one address in different cases: one user, 199 DuplicateEmailError."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    maker = create_sessionmaker(engine)
    local = "RaceCondition"
    variants = [
        "".join(c.upper() if (i >> k) & 1 else c.lower() for k, c in enumerate(local))
        for i in range(200)
    ]

    async def sign_up(address: str) -> str:
        try:
            async with transaction(maker) as db:
                await users.create(
                    db, UserCreate.model_validate({"email": address, "password": "long enough"})
                )
        except DuplicateEmailError:
            return "duplicate"
        return "created"

    async with asyncio.timeout(60):
        outcomes = Counter(await asyncio.gather(*(sign_up(f"{v}@example.com") for v in variants)))

    assert outcomes == {"created": 1, "duplicate": 199}
    count = await scalar(
        engine, "SELECT count(*) FROM users WHERE lower(email) = :e", e="racecondition@example.com"
    )
    assert count == 1


async def issued_token(maker: async_sessionmaker[AsyncSession], policy: SessionSettings) -> str:
    async with transaction(maker) as db:
        user = await make_user(db)
        token, _ = await sessions.issue(db, user.id, settings=policy)
    return token


async def test_concurrent_validates_touch_consistently(engine: AsyncEngine) -> None:
    policy = SessionSettings(_env_file=None, touch_interval=timedelta(seconds=1))
    maker = create_sessionmaker(engine)
    token = await issued_token(maker, policy)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE sessions SET created_at = now() - interval '1 hour',"
                " last_seen_at = now() - interval '1 hour'"
            )
        )

    async def validate() -> object:
        async with transaction(maker) as db:
            return await sessions.validate(db, token, settings=policy)

    async with asyncio.timeout(30):
        results = await asyncio.gather(*(validate() for _ in range(100)))

    assert all(result is not None for result in results)
    row = await scalar(
        engine,
        "SELECT last_seen_at > now() - interval '1 minute' AND last_seen_at <= now()"
        " AND expires_at = LEAST(last_seen_at + :idle, created_at + :cap) FROM sessions",
        idle=policy.idle_timeout,
        cap=policy.max_lifetime,
    )
    assert row is True


async def test_rotate_racing_validate_leaves_one_live_token(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    policy = SessionSettings(_env_file=None)
    token = await issued_token(maker, policy)

    async def rotate() -> str | None:
        async with transaction(maker) as db:
            rotated = await sessions.rotate(db, token, settings=policy)
        return None if rotated is None else rotated[0]

    async def validate() -> bool:
        async with transaction(maker) as db:
            return await sessions.validate(db, token, settings=policy) is not None

    async with asyncio.timeout(30):
        results = await asyncio.gather(
            *(rotate() for _ in range(20)), *(validate() for _ in range(20))
        )

    new_tokens = [r for r in results[:20] if isinstance(r, str)]
    assert len(new_tokens) == 1
    live = await scalar(
        engine, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > now()"
    )
    assert live == 1
    async with transaction(maker) as db:
        assert await sessions.validate(db, token, settings=policy) is None
        assert await sessions.validate(db, new_tokens[0], settings=policy) is not None


async def test_failed_bulk_import_leaves_nothing_behind(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    rows = [{"name": f"bulk {i}"} for i in range(25_000)]
    rows[20_000] = {"name": ""}

    with pytest.raises(InvalidInputError) as caught:
        async with transaction(maker) as db:
            await customers.bulk_import(db, rows, chunk_rows=5_000)

    assert caught.value.position == 20_000
    assert await scalar(engine, "SELECT count(*) FROM customers") == 0
