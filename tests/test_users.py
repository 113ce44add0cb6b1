"""app_db.users against the real database."""

import uuid

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    sessions,
    users,
)
from app_db.models import UserCreate, UserUpdate
from app_db.security import passwords
from app_db.security.passwords import HASHER
from tests.factories import PASSWORD, make_user


async def test_create_normalises_email_and_hashes_with_argon2id(db_session: AsyncSession) -> None:
    user = await users.create(
        db_session, UserCreate.model_validate({"email": " Ada@EXAMPLE.com", "password": PASSWORD})
    )

    assert user.email == "Ada@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert HASHER.verify(user.password_hash, PASSWORD)


def test_hash_parameters_meet_owasp_minimum() -> None:
    assert HASHER.time_cost >= 2
    assert HASHER.memory_cost >= 19 * 1024
    assert HASHER.parallelism >= 1


async def test_create_refuses_an_email_taken_in_another_case(db_session: AsyncSession) -> None:
    await make_user(db_session, "grace@example.com")

    with pytest.raises(DuplicateEmailError):
        await users.create(
            db_session,
            UserCreate.model_validate({"email": "GRACE@Example.COM", "password": PASSWORD}),
        )

    assert await users.get_by_email(db_session, "grace@example.com") is not None


async def test_create_validates_mappings_too(db_session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await users.create(db_session, {"email": "nope", "password": PASSWORD})  # type: ignore[arg-type]

    assert caught.value.field == "email"


async def test_get_and_get_by_email_in_any_case(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "Zoë@Example.com")

    assert await users.get(db_session, user.id) is user
    assert await users.get(db_session, uuid.uuid4()) is None
    assert await users.get_by_email(db_session, "zoë@example.COM") is user
    assert await users.get_by_email(db_session, "ZOË@EXAMPLE.COM") is user
    assert await users.get_by_email(db_session, "nobody@example.com") is None
    assert await users.get_by_email(db_session, "not an email\x00") is None


async def test_authenticate_checks_the_password(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "ada@example.com")

    assert await users.authenticate(db_session, "ADA@example.com", PASSWORD) is user
    assert await users.authenticate(db_session, "ada@example.com", "wrong password") is None
    assert await users.authenticate(db_session, "nobody@example.com", PASSWORD) is None


async def test_authenticate_refuses_inactive_users(db_session: AsyncSession) -> None:
    await make_user(db_session, "gone@example.com", active=False)

    assert await users.authenticate(db_session, "gone@example.com", PASSWORD) is None


async def test_authenticate_rehashes_when_parameters_changed(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "old@example.com")
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    user.password_hash = weak
    await db_session.flush()

    assert await users.authenticate(db_session, "old@example.com", PASSWORD) is user

    stored = await db_session.scalar(
        text("SELECT password_hash FROM users WHERE id = :id"), {"id": user.id}
    )
    assert stored != weak
    assert not HASHER.check_needs_rehash(stored)


async def test_update_is_partial_and_maps_duplicates(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "first@example.com")
    other = await make_user(db_session, "second@example.com")

    updated = await users.update(db_session, user.id, UserUpdate(display_name="Ada"))
    assert (updated.email, updated.display_name) == ("first@example.com", "Ada")

    with pytest.raises(DuplicateEmailError):
        await users.update(db_session, user.id, UserUpdate(email="SECOND@example.com"))
    with pytest.raises(InvalidInputError):
        await users.update(db_session, other.id, UserUpdate(email=None))
    with pytest.raises(NotFoundError):
        await users.update(db_session, uuid.uuid4(), UserUpdate(display_name="x"))


async def test_set_password_replaces_the_hash(db_session: AsyncSession) -> None:
    user = await make_user(db_session, "pw@example.com")

    await users.set_password(db_session, user.id, "a brand new password")

    assert await users.authenticate(db_session, "pw@example.com", PASSWORD) is None
    assert await users.authenticate(db_session, "pw@example.com", "a brand new password") is user
    with pytest.raises(InvalidInputError) as caught:
        await users.set_password(db_session, user.id, "short")
    assert caught.value.field == "password"
    with pytest.raises(NotFoundError):
        await users.set_password(db_session, uuid.uuid4(), "long enough password")


async def test_deactivate_revokes_every_session(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    token, _ = await sessions.issue(db_session, user.id)

    await users.deactivate(db_session, user.id)

    assert user.is_active is False
    assert await sessions.validate(db_session, token) is None
    assert await sessions.list_for_user(db_session, user.id) == []
    with pytest.raises(NotFoundError):
        await users.deactivate(db_session, uuid.uuid4())


async def test_unknown_email_costs_one_verification_like_a_known_one(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_user(db_session, "known@example.com")
    calls: list[str] = []
    real_verify = passwords._verify

    def counting_verify(password_hash: str, password: str) -> bool:
        calls.append(password_hash[:9])
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", counting_verify)

    assert await users.authenticate(db_session, "unknown@example.com", PASSWORD) is None
    assert await users.authenticate(db_session, "known@example.com", "wrong password") is None
    assert calls == ["$argon2id", "$argon2id"]
