"""The account lifecycle: reset and verification by one-time tokens, users listed and erased."""

import uuid
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    InvalidInputError,
    InvalidTokenError,
    ThrottledError,
    UserUpdate,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
    users,
)
from app_db.security.tokens import hash_token
from tests.factories import PASSWORD, make_user

NEW = "a brand new passphrase"
NEWER = "another new passphrase"


async def sql(db: AsyncSession, statement: str, **params: Any) -> Any:
    connection = await db.connection()
    return await connection.execute(text(statement), params)


async def test_a_reset_token_resets_the_password_once(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "ada@example.com")
    earlier = [(await sessions.issue(db_session, user.id))[0] for _ in range(3)]
    token = await users.forgot_password(db_session, "ADA@example.com")
    assert token is not None

    reset = await users.reset_password(db_session, token, NEW)

    assert reset.id == user.id
    assert [await sessions.validate(db_session, t) for t in earlier] == [None] * 3
    assert await users.authenticate(db_session, "ada@example.com", NEW) is not None
    with pytest.raises(InvalidTokenError):
        await users.reset_password(db_session, token, NEWER)
    assert await users.authenticate(db_session, "ada@example.com", NEW) is not None


async def test_expired_voided_and_unknown_tokens_are_refused(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    expired = await users.forgot_password(db_session, "ada@example.com")
    assert expired is not None
    await sql(
        db_session,
        "UPDATE one_time_tokens SET created_at = now() - interval '2 hours',"
        " expires_at = now() - interval '1 second' WHERE token_hash = :h",
        h=hash_token(expired),
    )
    older = await users.forgot_password(db_session, "ada@example.com")
    newer = await users.forgot_password(db_session, "ada@example.com")  # voids the older one
    assert older is not None
    assert newer is not None

    for refused in (expired, older, "not a token", "x" * 43):
        with pytest.raises(InvalidTokenError):
            await users.reset_password(db_session, refused, NEW)
    assert await users.reset_password(db_session, newer, NEW)


async def test_a_password_change_voids_reset_tokens(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "ada@example.com")
    token = await users.forgot_password(db_session, "ada@example.com")
    assert token is not None

    await users.set_password(db_session, user.id, NEW)

    with pytest.raises(InvalidTokenError):
        await users.reset_password(db_session, token, NEWER)


async def test_a_refused_password_leaves_the_token_unspent(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    token = await users.forgot_password(db_session, "ada@example.com")
    assert token is not None

    with pytest.raises(InvalidInputError) as refused:
        await users.reset_password(db_session, token, "password1")

    assert refused.value.field == "password"
    assert await users.reset_password(db_session, token, NEW)


async def test_unknown_and_deactivated_emails_get_none(db_session: AsyncSession) -> None:
    await make_user(db_session, "gone@example.com", active=False)

    assert await users.forgot_password(db_session, "nobody@example.com") is None
    assert await users.forgot_password(db_session, "gone@example.com") is None
    assert await users.forgot_password(db_session, "not an email") is None
    count = await sql(db_session, "SELECT count(*) FROM one_time_tokens")
    assert count.scalar_one() == 0


async def test_known_and_unknown_emails_send_the_same_statements(engine: AsyncEngine) -> None:
    """The same statements, and a transaction that writes at its COMMIT either way."""
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        await make_user(db, "ada@example.com")
    sent: list[str] = []

    def record(_: Connection, __: Any, statement: str, *___: Any) -> None:
        sent.append(statement)

    async def ask(email: str) -> tuple[bool, list[str]]:
        sent.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            async with transaction(maker) as db:
                token = await users.forgot_password(db, email, ip="203.0.113.7")
                wrote = await db.scalar(text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL"))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        return bool(wrote) and (token is not None) == email.startswith("ada"), list(sent)

    known, known_sent = await ask("ada@example.com")
    unknown, unknown_sent = await ask("nobody@example.com")

    assert known
    assert unknown
    assert known_sent == unknown_sent
    assert any("pg_current_xact_id()" in statement for statement in known_sent)


async def test_reset_requests_are_throttled_per_account(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    answers: list[str | int | None] = []
    for n in range(7):
        try:
            token = await users.forgot_password(db_session, "ada@example.com", ip=f"10.0.{n}.1")
        except ThrottledError as refused:
            answers.append(refused.retry_after)
        else:
            answers.append("mailed" if token else None)

    assert answers == ["mailed"] * 6 + [1]  # from any network: an inbox is one inbox


async def test_a_verified_email_is_unverified_by_a_change(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "ada@example.com")
    token = await users.request_verification(db_session, user.id)
    stale = await users.request_verification(db_session, user.id)
    with pytest.raises(InvalidTokenError):
        await users.verify_email(db_session, token)  # voided by the newer one

    verified = await users.verify_email(db_session, stale)
    assert verified.verified_at is not None
    pending = await users.request_verification(db_session, user.id)

    changed = await users.update(db_session, user.id, UserUpdate(email="ada.l@example.com"))

    assert changed.verified_at is None
    with pytest.raises(InvalidTokenError):
        await users.verify_email(db_session, pending)  # sent to the old address
    with pytest.raises(InvalidTokenError):
        await users.verify_email(db_session, stale)  # spent
    with pytest.raises(Exception, match="user"):
        await users.request_verification(db_session, uuid.uuid4())


async def test_users_list_pages_through_a_thousand_users_without_repeats_or_gaps(
    db_session: AsyncSession,
) -> None:
    await sql(
        db_session,
        "INSERT INTO users (email, password_hash, created_at)"
        " SELECT 'u' || i || '@example.com', 'h', now() - (i % 7) * interval '1 minute'"
        " FROM generate_series(1, 1000) AS i",
    )
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await users.list(db_session, limit=37, cursor=cursor)
        seen += [u.id for u in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert len(seen) == 1000
    assert len(set(seen)) == 1000
    found = await users.list(db_session, search="u77@", limit=500)
    assert [u.email for u in found.items] == ["u77@example.com"]
    with pytest.raises(InvalidInputError):
        await users.list(db_session, limit=0)


async def test_delete_erases_the_user_and_keeps_their_customers_ownerless(
    db_session: AsyncSession,
) -> None:
    user = await make_user(db_session, "ada@example.com")
    token, _ = await sessions.issue(db_session, user.id)
    await users.request_verification(db_session, user.id)
    kept = await customers.create(db_session, CustomerCreate(name="Acme", owner_id=user.id))

    assert await users.delete(db_session, user.id) is True
    assert await users.delete(db_session, user.id) is False

    assert await users.get(db_session, user.id) is None
    assert await sessions.validate(db_session, token) is None
    left = await sql(
        db_session,
        "SELECT (SELECT count(*) FROM sessions WHERE user_id = :u),"
        " (SELECT count(*) FROM one_time_tokens WHERE user_id = :u),"
        " (SELECT owner_id FROM customers WHERE id = :c)",
        u=user.id,
        c=kept.id,
    )
    assert tuple(left.one()) == (0, 0, None)
    assert await users.authenticate(db_session, "ada@example.com", PASSWORD) is None
