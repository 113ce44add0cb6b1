"""Generated input, of every shape: each call succeeds or raises app_db's typed error.

Nothing may reach the driver as an unhandled exception. Each example runs in a savepoint
that is rolled back, inside the test's own rolled-back transaction.
"""

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
    customers,
    sessions,
    users,
)
from app_db.models import CustomerCreate, CustomerUpdate, SessionUpdate, UserCreate, UserUpdate
from app_db.pagination import encode_cursor
from app_db.security import passwords

EXPECTED = (InvalidInputError, DuplicateEmailError, NotFoundError, ThrottledError)
RUNS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_char = st.characters(codec=None, categories=None)  # includes NUL and lone surrogates
nasty_text = st.one_of(
    st.text(any_char, max_size=50),
    st.builds(lambda c, n: c * n, any_char, st.integers(0, 100_000)),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "é" * 300, "x" * 201]),
)
emails = st.one_of(
    st.emails(),
    st.builds(lambda e: e.upper(), st.emails()),
    st.builds(lambda local, dom: f"{local}@{dom}", nasty_text, nasty_text),
    nasty_text,
)
datetimes = st.datetimes(timezones=st.none() | st.just(UTC))


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property is about validation: a cheap argon2id keeps 150 sign-ups quick."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))


async def attempt(db: AsyncSession, call: Callable[[], Awaitable[Any]]) -> None:
    savepoint = await db.begin_nested()
    try:
        await call()
    except EXPECTED:
        pass
    finally:
        if savepoint.is_active:
            await savepoint.rollback()


addresses = st.one_of(st.ip_addresses().map(str), nasty_text)


@RUNS
@given(email=emails, password=nasty_text, display_name=st.none() | nasty_text, address=addresses)
async def test_users_create_and_lookups(
    db_session: AsyncSession, email: str, password: str, display_name: str | None, address: str
) -> None:
    data = {"email": email, "password": password, "display_name": display_name}
    await attempt(db_session, lambda: users.create(db_session, data))  # type: ignore[arg-type]
    await attempt(db_session, lambda: users.get_by_email(db_session, email))
    await attempt(db_session, lambda: users.authenticate(db_session, email, password, ip=address))
    await attempt(
        db_session,
        lambda: users.update(db_session, uuid.uuid4(), {"email": email}),  # type: ignore[arg-type]
    )


@RUNS
@given(name=nasty_text, email=st.none() | emails, phone=st.none() | nasty_text)
async def test_customers_create_and_update(
    db_session: AsyncSession, name: str, email: str | None, phone: str | None
) -> None:
    data = {"name": name, "email": email, "phone": phone}
    await attempt(db_session, lambda: customers.create(db_session, data))  # type: ignore[arg-type]
    await attempt(
        db_session,
        lambda: customers.update(db_session, uuid.uuid4(), data),  # type: ignore[arg-type]
    )
    await attempt(db_session, lambda: customers.bulk_import(db_session, [data, data]))


cursors = st.one_of(
    nasty_text,
    st.builds(lambda b: base64.urlsafe_b64encode(b).decode(), st.binary(max_size=40)),
    st.builds(
        lambda when, i: encode_cursor(when, uuid.UUID(int=i)),
        st.datetimes(timezones=st.just(UTC)),
        st.integers(0, 2**128 - 1),
    ),
    st.builds(
        lambda c, n: c[:n],
        st.just(encode_cursor(datetime.now(UTC), uuid.uuid4())),
        st.integers(0, 31),
    ),
)


@RUNS
@given(
    limit=st.integers(-(10**9), 10**9) | st.sampled_from([0, 1, 50, 500, 501]),
    cursor=st.none() | cursors,
    search=st.none() | nasty_text,
)
async def test_customers_list(
    db_session: AsyncSession, limit: int, cursor: str | None, search: str | None
) -> None:
    await attempt(
        db_session, lambda: customers.list(db_session, limit=limit, cursor=cursor, search=search)
    )


@RUNS
@given(token=nasty_text)
async def test_tokens_of_any_shape_are_simply_not_valid(
    db_session: AsyncSession, token: str
) -> None:
    assert await sessions.validate(db_session, token) is None
    assert await sessions.revoke(db_session, token) is False
    assert await sessions.rotate(db_session, token) is None


@RUNS
@given(
    ttl=st.none()
    | st.timedeltas(min_value=timedelta(days=-(10**6)), max_value=timedelta(days=10**6)),
    ip=st.none() | nasty_text | st.ip_addresses().map(str),
    user_agent=st.none() | nasty_text,
)
async def test_sessions_issue(
    db_session: AsyncSession, ttl: timedelta | None, ip: str | None, user_agent: str | None
) -> None:
    user = await users.create(
        db_session,
        UserCreate.model_validate(
            {"email": f"{uuid.uuid4().hex}@example.com", "password": "long enough"}
        ),
    )
    await attempt(
        db_session,
        lambda: sessions.issue(db_session, user.id, ttl=ttl, ip=ip, user_agent=user_agent),
    )


@RUNS
@given(when=datetimes, name=nasty_text)
def test_schemas_refuse_naive_datetimes_and_unstorable_text(when: datetime, name: str) -> None:
    for build in (
        lambda: SessionUpdate(expires_at=when, last_seen_at=when, revoked_at=when),
        lambda: CustomerCreate.model_validate({"name": name}),
        lambda: CustomerUpdate.model_validate({"name": name, "phone": name}),
        lambda: UserUpdate.model_validate({"display_name": name, "email": name}),
    ):
        try:
            build()
        except ValidationError:
            continue
    if when.tzinfo is None:
        with pytest.raises(ValidationError):
            SessionUpdate(expires_at=when)
