"""app_db.sessions against the real database, with expiry measured by the database's clock.

Inside a test's transaction ``now()`` stands still, so rows are moved in time relative to it
and every boundary is exact.
"""

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import InvalidInputError, NotFoundError, create_sessionmaker, sessions, transaction
from app_db.models import User
from app_db.settings import SessionSettings
from tests.factories import make_user

POLICY = SessionSettings(
    _env_file=None,
    idle_timeout=timedelta(hours=1),
    max_lifetime=timedelta(hours=8),
    touch_interval=timedelta(minutes=5),
)


async def sql(db: AsyncSession, statement: str, **params: Any) -> Any:
    connection = await db.connection()
    return await connection.execute(text(statement), params)


async def place(db: AsyncSession, session_id: uuid.UUID, **offsets: str) -> None:
    """Set timestamps to ``now() + offset`` (offsets as SQL intervals) for one session."""
    assignments = ", ".join(
        f"{name} = now() + interval '{value}'" for name, value in offsets.items()
    )
    await sql(db, f"UPDATE sessions SET {assignments} WHERE id = :id", id=session_id)  # noqa: S608


async def issued(
    db: AsyncSession, user: User | None = None, **kwargs: Any
) -> tuple[str, uuid.UUID]:
    owner = user or await make_user(db)
    token, session = await sessions.issue(db, owner.id, settings=POLICY, **kwargs)
    return token, session.id


async def test_issue_returns_a_256_bit_token_and_stores_only_its_hash(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    token, session = await sessions.issue(
        db_session, user.id, ip="203.0.113.9", user_agent="curl/8", settings=POLICY
    )

    row = (await sql(db_session, "SELECT * FROM sessions WHERE id = :id", id=session.id)).one()
    assert len(token) == 43
    assert len(set(token)) > 10
    assert row.token_hash == hashlib.sha256(token.encode()).digest()
    assert all(token not in str(value) for value in row)
    assert token.encode() not in bytes(row.token_hash)
    assert (str(row.ip), row.user_agent) == ("203.0.113.9", "curl/8")
    lifetime = await db_session.scalar(
        text("SELECT expires_at - created_at FROM sessions WHERE id = :id"), {"id": session.id}
    )
    assert lifetime == POLICY.idle_timeout
    assert session.expires_at == row.expires_at


async def test_tokens_are_unique(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    tokens = {(await sessions.issue(db_session, user.id, settings=POLICY))[0] for _ in range(20)}

    assert len(tokens) == 20


async def test_issue_caps_ttl_and_checks_input(db_session: AsyncSession) -> None:
    user = await make_user(db_session)

    _, long = await sessions.issue(db_session, user.id, ttl=timedelta(days=365), settings=POLICY)
    assert long.expires_at - long.created_at == POLICY.max_lifetime

    with pytest.raises(InvalidInputError, match="ttl"):
        await sessions.issue(db_session, user.id, ttl=timedelta(0), settings=POLICY)
    with pytest.raises(InvalidInputError) as caught:
        await sessions.issue(db_session, user.id, ip="not-an-ip", settings=POLICY)
    assert caught.value.field == "ip"


async def test_issue_trims_user_agent_to_what_the_column_holds(db_session: AsyncSession) -> None:
    user = await make_user(db_session)

    _, session = await sessions.issue(
        db_session, user.id, user_agent="x\x00" * 600, settings=POLICY
    )

    assert session.user_agent == "x" * 512


async def test_issue_for_unknown_user_is_not_found(db_session: AsyncSession) -> None:
    with pytest.raises(NotFoundError):
        await sessions.issue(db_session, uuid.uuid4(), settings=POLICY)


async def test_validate_returns_session_and_user(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    token, session_id = await issued(db_session, user)

    found = await sessions.validate(db_session, token, settings=POLICY)

    assert found is not None
    session, owner = found
    assert (session.id, owner.id, owner.email) == (session_id, user.id, user.email)


@pytest.mark.parametrize(
    "token",
    ["", "short", "x" * 43, "é" * 43, "a" * 10_000, "\x00" * 43, "A" * 42 + "="],
    ids=["empty", "short", "unknown", "non-ascii", "huge", "nul", "padding"],
)
async def test_validate_is_none_for_tokens_of_any_shape(
    db_session: AsyncSession, token: str
) -> None:
    assert await sessions.validate(db_session, token, settings=POLICY) is None


async def test_validate_is_none_when_revoked_or_user_inactive(db_session: AsyncSession) -> None:
    revoked, _ = await issued(db_session)
    assert await sessions.revoke(db_session, revoked)
    inactive_user = await make_user(db_session, active=False)
    inactive, _ = await issued(db_session, inactive_user)

    assert await sessions.validate(db_session, revoked, settings=POLICY) is None
    assert await sessions.validate(db_session, inactive, settings=POLICY) is None


@pytest.mark.parametrize(
    ("expires_in", "valid"),
    [("0 seconds", False), ("1 microsecond", True), ("-1 second", False)],
)
async def test_expiry_boundary_follows_the_database_clock(
    db_session: AsyncSession, expires_in: str, *, valid: bool
) -> None:
    token, session_id = await issued(db_session)
    await place(db_session, session_id, created_at="-2 hours", expires_at=expires_in)

    assert (await sessions.validate(db_session, token, settings=POLICY) is not None) is valid


async def test_validate_touches_at_most_once_per_interval(db_session: AsyncSession) -> None:
    token, session_id = await issued(db_session)
    await place(
        db_session,
        session_id,
        created_at="-30 minutes",
        last_seen_at="-299 seconds",
        expires_at="10 minutes",
    )

    found = await sessions.validate(db_session, token, settings=POLICY)
    assert found is not None
    untouched = (
        await sql(
            db_session,
            "SELECT last_seen_at = now() - interval '299 seconds' AS same,"
            " expires_at = now() + interval '10 minutes' AS kept FROM sessions WHERE id = :id",
            id=session_id,
        )
    ).one()
    assert untouched.same
    assert untouched.kept

    await place(db_session, session_id, last_seen_at="-5 minutes")
    found = await sessions.validate(db_session, token, settings=POLICY)
    assert found is not None
    touched = (
        await sql(
            db_session,
            "SELECT last_seen_at = now() AS seen, expires_at = now() + interval '1 hour' AS slid"
            " FROM sessions WHERE id = :id",
            id=session_id,
        )
    ).one()
    assert touched.seen
    assert touched.slid
    assert found[0].last_seen_at == found[0].expires_at - POLICY.idle_timeout


async def test_sliding_expiry_stops_at_the_absolute_lifetime(db_session: AsyncSession) -> None:
    token, session_id = await issued(db_session)
    await place(
        db_session,
        session_id,
        created_at="-7 hours -30 minutes",
        last_seen_at="-10 minutes",
        expires_at="50 minutes",
    )

    found = await sessions.validate(db_session, token, settings=POLICY)

    assert found is not None
    session = found[0]
    assert session.expires_at == session.created_at + POLICY.max_lifetime


async def test_rotate_revokes_the_old_token(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    old_token, old_id = await issued(db_session, user, ip="198.51.100.7", user_agent="ua")

    rotated = await sessions.rotate(db_session, old_token, settings=POLICY)

    assert rotated is not None
    new_token, new_session = rotated
    assert new_token != old_token
    assert new_session.id != old_id
    assert (new_session.user_id, new_session.ip, new_session.user_agent) == (
        user.id,
        "198.51.100.7",
        "ua",
    )
    assert await sessions.validate(db_session, old_token, settings=POLICY) is None
    assert await sessions.validate(db_session, new_token, settings=POLICY) is not None
    assert await sessions.rotate(db_session, old_token, settings=POLICY) is None
    assert await sessions.rotate(db_session, "garbage", settings=POLICY) is None


async def test_revoke_and_revoke_all(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    keep, keep_id = await issued(db_session, user)
    others = [(await issued(db_session, user))[0] for _ in range(3)]
    stranger, _ = await issued(db_session)

    assert await sessions.revoke(db_session, others[0]) is True
    assert await sessions.revoke(db_session, others[0]) is False
    assert await sessions.revoke(db_session, "not a token") is False
    assert await sessions.revoke_all(db_session, user.id, except_session_id=keep_id) == 2
    assert await sessions.validate(db_session, keep, settings=POLICY) is not None
    assert await sessions.validate(db_session, stranger, settings=POLICY) is not None
    assert [await sessions.validate(db_session, t, settings=POLICY) for t in others] == [None] * 3
    assert await sessions.revoke_all(db_session, user.id) == 1


async def test_list_for_user_shows_live_sessions_newest_first(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    _, first_id = await issued(db_session, user)
    _, second_id = await issued(db_session, user)
    _, ended_id = await issued(db_session, user)
    await place(db_session, first_id, created_at="-1 hour", expires_at="1 minute")
    await place(db_session, ended_id, created_at="-2 hours", expires_at="-1 minute")

    live = await sessions.list_for_user(db_session, user.id)
    everything = await sessions.list_for_user(db_session, user.id, include_ended=True)

    assert [s.id for s in live] == [second_id, first_id]
    assert {s.id for s in everything} == {first_id, second_id, ended_id}


async def test_purge_deletes_expired_sessions_only(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    expired = [(await issued(db_session, user))[1] for _ in range(5)]
    for session_id in expired:
        await place(db_session, session_id, created_at="-2 hours", expires_at="-1 second")
    live, _ = await issued(db_session, user)
    revoked, _ = await issued(db_session, user)
    await sessions.revoke(db_session, revoked)

    assert await sessions.purge_expired(db_session, batch_size=2, max_batches=1) == 2
    assert await sessions.purge_expired(db_session, batch_size=2) == 3
    assert await sessions.purge_expired(db_session) == 0

    remaining = await sessions.list_for_user(db_session, user.id, include_ended=True)
    assert len(remaining) == 2
    assert await sessions.validate(db_session, live, settings=POLICY) is not None
    with pytest.raises(InvalidInputError):
        await sessions.purge_expired(db_session, batch_size=0)


async def test_an_issued_session_is_part_of_the_callers_transaction(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The INSERT goes to the driver directly, yet commits or rolls back with the caller."""
    await issued_then_abandoned(db_sessionmaker)


async def test_an_issued_session_is_part_of_a_transaction_on_the_apps_engine(
    engine: AsyncEngine,
) -> None:
    """The same on an engine-bound sessionmaker, where nothing began the transaction before.

    SQLAlchemy's asyncpg adapter sends ``BEGIN`` before its first statement; the INSERT going
    to the driver first once ran on its own, committed, and the rollback took nothing back.
    """
    await issued_then_abandoned(create_sessionmaker(engine))


async def issued_then_abandoned(maker: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(maker) as db:
        user = await make_user(db)

    class AbandonedError(Exception):
        pass

    issued: list[str] = []

    async def issue_then_fail() -> None:
        async with transaction(maker) as db:
            token, _ = await sessions.issue(db, user.id)
            issued.append(token)
            assert await sessions.validate(db, token) is not None  # seen inside
            raise AbandonedError

    with pytest.raises(AbandonedError):
        await issue_then_fail()
    dropped = issued[0]
    async with transaction(maker) as db:
        kept, _ = await sessions.issue(db, user.id)

    async with transaction(maker) as db:
        assert await sessions.validate(db, dropped) is None
        assert await sessions.validate(db, kept) is not None


async def test_issue_for_a_user_added_in_the_same_transaction(db_session: AsyncSession) -> None:
    """A user still pending in the session is flushed before the session row refers to it."""
    user = User(email="pending@example.com", password_hash="$argon2id$stand-in")
    db_session.add(user)
    token, session = await sessions.issue(db_session, user.id)

    assert session.user_id == user.id
    assert await sessions.validate(db_session, token) is not None
