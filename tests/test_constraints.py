"""Constraints and types enforced by the migrated schema itself, below the Pydantic layer."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Result, event, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.errors import violated_constraint
from app_db.models import Customer, CustomerCreate, Session, User, UserCreate

TOKEN_HASH = bytes(32)


def new_user(email: str = "Ada@Example.com") -> User:
    create = UserCreate.model_validate({"email": email, "password": "correct horse"})
    return User.model_validate(create, update={"password_hash": "argon2id$placeholder"})


def new_session(user: User, *, expires_at: datetime, token_hash: bytes = TOKEN_HASH) -> Session:
    return Session(user_id=user.id, token_hash=token_hash, expires_at=expires_at)


async def sql(db_session: AsyncSession, statement: str, **params: object) -> Result[Any]:
    connection = await db_session.connection()
    return await connection.execute(text(statement), params)


async def insert_violating(db_session: AsyncSession, statement: str, **params: object) -> str:
    with pytest.raises(IntegrityError) as caught:
        await sql(db_session, statement, **params)
    name = violated_constraint(caught.value)
    assert name is not None
    return name


async def test_server_fills_ids_and_aware_timestamps(db_session: AsyncSession) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()

    assert user.id.version == 7
    assert user.is_active is True
    assert user.created_at.tzinfo is not None
    assert user.updated_at == user.created_at


async def test_email_is_unique_regardless_of_case(db_session: AsyncSession) -> None:
    db_session.add(new_user("ada@example.com"))
    await db_session.flush()
    db_session.add(new_user("ADA@EXAMPLE.COM"))

    with pytest.raises(IntegrityError) as caught:
        await db_session.flush()

    assert violated_constraint(caught.value) == "uq_users_email_lower"


async def test_email_lookup_by_lower_uses_the_unique_index(db_session: AsyncSession) -> None:
    await sql(db_session, "SET LOCAL enable_seqscan = off")
    plan = await sql(
        db_session,
        "EXPLAIN SELECT id FROM users WHERE lower(email) = lower(:email)",
        email="Ada@Example.com",
    )

    assert "uq_users_email_lower" in "\n".join(plan.scalars())


async def test_sessions_cascade_when_their_user_is_deleted(db_session: AsyncSession) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()
    db_session.add(new_session(user, expires_at=datetime.now(UTC) + timedelta(hours=1)))
    await db_session.flush()

    await sql(db_session, "DELETE FROM users WHERE id = :id", id=user.id)
    remaining = await db_session.exec(select(Session).where(col(Session.user_id) == user.id))

    assert remaining.all() == []


async def test_customers_keep_their_row_when_the_owner_goes(db_session: AsyncSession) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()
    customer = Customer.model_validate(CustomerCreate(name="Acme", owner_id=user.id))
    db_session.add(customer)
    await db_session.flush()

    await sql(db_session, "DELETE FROM users WHERE id = :id", id=user.id)
    await db_session.refresh(customer)

    assert customer.owner_id is None


async def test_session_needs_an_existing_user(db_session: AsyncSession) -> None:
    name = await insert_violating(
        db_session,
        "INSERT INTO sessions (user_id, token_hash, expires_at) "
        "VALUES (:user_id, :token_hash, now() + interval '1 hour')",
        user_id=uuid.uuid4(),
        token_hash=TOKEN_HASH,
    )

    assert name == "fk_sessions_user_id_users"


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("INSERT INTO customers (name) VALUES ('')", "ck_customers_name_length"),
        ("INSERT INTO customers (name) VALUES (repeat('x', 201))", "ck_customers_name_length"),
        ("INSERT INTO customers (name, email) VALUES ('A', 'a')", "ck_customers_email_length"),
        ("INSERT INTO customers (name, phone) VALUES ('A', '1')", "ck_customers_phone_length"),
        (
            "INSERT INTO users (email, password_hash) VALUES (:email, '')",
            "ck_users_password_hash_not_empty",
        ),
        (
            "INSERT INTO users (email, password_hash, display_name) VALUES (:email, 'h', '')",
            "ck_users_display_name_length",
        ),
    ],
)
async def test_check_constraints_hold(
    db_session: AsyncSession, statement: str, constraint: str
) -> None:
    params = {"email": "a@b.c"} if ":email" in statement else {}  # data as parameters, never SQL
    assert await insert_violating(db_session, statement, **params) == constraint


@pytest.mark.parametrize(
    ("token_hash", "expires_in", "constraint"),
    [
        pytest.param(bytes(31), timedelta(hours=1), "ck_sessions_token_hash_length", id="hash"),
        pytest.param(
            bytes(32), timedelta(seconds=-1), "ck_sessions_expires_at_after_created_at", id="expiry"
        ),
    ],
)
async def test_session_checks_hold(
    db_session: AsyncSession, token_hash: bytes, expires_in: timedelta, constraint: str
) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()

    name = await insert_violating(
        db_session,
        "INSERT INTO sessions (user_id, token_hash, expires_at) "
        "VALUES (:user_id, :token_hash, now() + :expires_in)",
        user_id=user.id,
        token_hash=token_hash,
        expires_in=expires_in,
    )

    assert name == constraint


async def test_token_hash_is_unique(db_session: AsyncSession) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    db_session.add(new_session(user, expires_at=expires_at))
    await db_session.flush()
    db_session.add(new_session(user, expires_at=expires_at))

    with pytest.raises(IntegrityError) as caught:
        await db_session.flush()

    assert violated_constraint(caught.value) == "uq_sessions_token_hash"


async def test_naive_datetime_is_refused_before_it_reaches_the_server(
    db_session: AsyncSession,
) -> None:
    user = new_user()
    db_session.add(user)
    await db_session.flush()
    db_session.add(new_session(user, expires_at=datetime(2030, 1, 1)))  # noqa: DTZ001

    with pytest.raises(StatementError, match="naive datetime refused"):
        await db_session.flush()


async def test_orm_update_renews_updated_at(db_session: AsyncSession) -> None:
    customer = Customer.model_validate(CustomerCreate(name="Acme"))
    db_session.add(customer)
    await db_session.flush()
    statements: list[str] = []
    connection = await db_session.connection()
    event.listen(
        connection.sync_connection,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )

    customer.name = "Acme Ltd"
    await db_session.flush()

    updates = [s for s in statements if s.startswith("UPDATE customers")]
    assert len(updates) == 1
    assert "updated_at=now()" in updates[0]
