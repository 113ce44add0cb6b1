"""Sessions end with the credentials: a new password or email, a device signed out, the cap."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    ConfigurationError,
    InvalidInputError,
    UserUpdate,
    create_engine,
    create_sessionmaker,
    fastpath,
    load_session_settings,
    sessions,
    transaction,
    users,
)
from app_db.engine import dispose
from app_db.sessions import issue_capped_sql
from app_db.settings import MAX_SESSIONS_PER_USER, SessionSettings
from tests.conftest import settings as settings_for
from tests.factories import make_user
from tests.test_search import driver as search_driver

NEW_PASSWORD = "a brand new passphrase"


async def live(db: AsyncSession, tokens: list[str]) -> list[bool]:
    return [await sessions.validate(db, token) is not None for token in tokens]


async def tokens_of(db: AsyncSession, user_id: uuid.UUID, count: int) -> list[str]:
    return [(await sessions.issue(db, user_id))[0] for _ in range(count)]


async def test_a_new_password_ends_every_earlier_session(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    earlier = await tokens_of(db_session, user.id, 3)
    stranger = await make_user(db_session)
    other = await tokens_of(db_session, stranger.id, 1)

    assert await users.set_password(db_session, user.id, NEW_PASSWORD) == 3

    assert await live(db_session, earlier) == [False] * 3
    assert await live(db_session, other) == [True]


async def test_the_device_that_changed_the_password_may_stay_signed_in(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    earlier = await tokens_of(db_session, user.id, 2)
    this_token, this_device = await sessions.issue(db_session, user.id)

    revoked = await users.set_password(
        db_session, user.id, NEW_PASSWORD, keep_session_id=this_device.id
    )

    assert revoked == 2
    assert await live(db_session, [*earlier, this_token]) == [False, False, True]


async def test_the_user_may_choose_to_keep_other_devices(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    earlier = await tokens_of(db_session, user.id, 2)

    assert await users.set_password(db_session, user.id, NEW_PASSWORD, revoke_sessions=False) == 0

    assert await live(db_session, earlier) == [True, True]


async def test_a_new_email_ends_the_other_sessions_and_a_new_name_does_not(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session, "old@example.com")
    earlier = await tokens_of(db_session, user.id, 2)
    this_token, this_device = await sessions.issue(db_session, user.id)

    await users.update(db_session, user.id, UserUpdate(display_name="Ada"))
    assert await live(db_session, [*earlier, this_token]) == [True] * 3

    await users.update(db_session, user.id, UserUpdate(email="OLD@example.com"))  # same email
    assert await live(db_session, [*earlier, this_token]) == [True] * 3

    await users.update(
        db_session, user.id, UserUpdate(email="new@example.com"), keep_session_id=this_device.id
    )
    assert await live(db_session, [*earlier, this_token]) == [False, False, True]


async def test_revoke_by_id_signs_out_one_device_of_its_user_only(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session)
    phone, phone_session = await sessions.issue(db_session, user.id)
    laptop, laptop_session = await sessions.issue(db_session, user.id)
    stranger = await make_user(db_session)

    assert await sessions.revoke_by_id(db_session, stranger.id, phone_session.id) is False
    assert await sessions.revoke_by_id(db_session, user.id, phone_session.id) is True
    assert await sessions.revoke_by_id(db_session, user.id, phone_session.id) is False
    assert await sessions.revoke_by_id(db_session, user.id, uuid.uuid4()) is False

    assert await live(db_session, [phone, laptop]) == [False, True]
    listed = await sessions.list_for_user(db_session, user.id)
    assert [s.id for s in listed] == [laptop_session.id]


async def test_past_the_cap_the_oldest_session_goes_first(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    tokens = await tokens_of(db_session, user.id, 10)  # SESSION_MAX_PER_USER, by default
    assert await live(db_session, tokens) == [True] * 10

    tokens += await tokens_of(db_session, user.id, 2)

    assert await live(db_session, tokens) == [False, False] + [True] * 10
    assert len(await sessions.list_for_user(db_session, user.id)) == 10


async def test_a_revocation_writes_no_index_entry(db_session: AsyncSession) -> None:
    """Revoked at the cap or signed out, a session's new row version is a HOT update: no index
    holds ``revoked_at``, and each page of the table keeps room for it."""
    user = await make_user(db_session)
    tokens = await tokens_of(db_session, user.id, 10)
    hot_updates = text("SELECT pg_stat_get_xact_tuples_hot_updated('sessions'::regclass)")
    before = await db_session.scalar(hot_updates)

    tokens += await tokens_of(db_session, user.id, 1)  # revokes the oldest
    assert await sessions.revoke(db_session, tokens[-1])

    assert await db_session.scalar(hot_updates) == before + 2
    assert await live(db_session, tokens) == [False] + [True] * 9 + [False]
    options = text("SELECT reloptions FROM pg_class WHERE oid = 'sessions'::regclass")
    assert await db_session.scalar(options) == ["fillfactor=85"]


async def test_the_caps_plan_reads_no_expired_session(db_session: AsyncSession) -> None:
    """The cap's generic plan finds the user's sessions by expiry in its index: the user's
    expired sessions, kept until a purge, are never read."""
    user = await make_user(db_session)
    await db_session.exec(  # type: ignore[call-overload]
        text(
            "INSERT INTO sessions (user_id, token_hash, created_at, expires_at)"
            " SELECT :user_id, sha256(convert_to(n::text, 'UTF8')),"
            " now() - interval '40 days', now() - interval '1 day' - n * interval '1 second'"
            " FROM generate_series(1, 500) AS n"
        ),
        params={"user_id": user.id},
    )
    await tokens_of(db_session, user.id, 10)
    raw = await search_driver(db_session)
    await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    await raw.execute(
        "PREPARE capped(uuid, uuid, bytea, inet, text, interval) AS " + issue_capped_sql(9)
    )
    values = f"gen_random_uuid(), '{user.id}', sha256('x'), NULL, NULL, '1 hour'"
    plan = "\n".join(
        row[0] for row in await raw.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE capped({values})")
    )
    await raw.execute("DEALLOCATE capped")

    assert "Index Scan using ix_sessions_user_id_expires_at" in plan
    assert "Index Cond: ((user_id = $2) AND (expires_at > now()))" in plan
    assert "Rows Removed by Filter" not in plan  # neither expired nor revoked rows were read


async def test_the_cap_is_a_setting_and_zero_turns_it_off(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    one = SessionSettings(_env_file=None, max_per_user=1)
    off = SessionSettings(_env_file=None, max_per_user=0, idle_timeout=timedelta(hours=1))

    first, _ = await sessions.issue(db_session, user.id, settings=one)
    second, _ = await sessions.issue(db_session, user.id, settings=one)
    assert await live(db_session, [first, second]) == [False, True]

    many = [(await sessions.issue(db_session, user.id, settings=off))[0] for _ in range(12)]
    assert await live(db_session, [second, *many]) == [True] * 13
    with pytest.raises(ConfigurationError, match="SESSION_MAX_PER_USER"):
        load_session_settings(_env_file=None, max_per_user=-1)


async def test_a_login_at_the_cap_keeps_one_plan_instead_of_planning_at_every_call(
    own_database: URL,
) -> None:
    # A database of its own, and one pooled connection: the statement has no history there.
    one = create_engine(settings_for(own_database, database_pool_size=1, database_max_overflow=0))
    try:
        async with one.begin() as connection:  # 10,000 users, each at the cap of 10 sessions
            await connection.exec_driver_sql(
                "INSERT INTO users (email, password_hash)"
                " SELECT 'capped' || i || '@example.com', 'h' FROM generate_series(1, 10000) AS i"
            )
            await connection.exec_driver_sql(
                "INSERT INTO sessions (user_id, token_hash, created_at, expires_at)"
                " SELECT u.id, sha256(convert_to(u.email || n, 'UTF8')),"
                " now() - n * interval '1 minute', now() + interval '1 day'"
                " FROM users AS u, generate_series(1, 10) AS n"
            )
        async with one.begin() as connection:  # committed, as statistics must be to count
            await connection.exec_driver_sql("ANALYZE users, sessions")
            found = await connection.exec_driver_sql("SELECT id FROM users ORDER BY id LIMIT 12")
            logging_in = [row.id for row in found]
        maker = create_sessionmaker(one)
        for user_id in logging_in:  # PostgreSQL weighs a generic plan after five custom ones
            async with transaction(maker) as db:
                await sessions.issue(db, user_id)

        plans = await fastpath.run_borrowed(
            one,
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE $1",
            ("%over_cap AS%",),
        )
        assert [(row["generic_plans"], row["custom_plans"]) for row in plans] == [(7, 5)]
        async with transaction(maker) as db:
            assert [len(await sessions.list_for_user(db, u)) for u in logging_in] == [10] * 12
    finally:
        await dispose(one)


@pytest.mark.parametrize("others", [-1, MAX_SESSIONS_PER_USER, True, 9.0, "9; DROP TABLE users"])
def test_the_cap_written_into_the_statement_is_an_integer_in_range(others: object) -> None:
    assert "OFFSET 9\n" in sessions.issue_capped_sql(9)
    with pytest.raises(InvalidInputError, match="max_per_user"):
        sessions.issue_capped_sql(others)
