"""No secret in a repr, no input that skips validation, no error that repeats its input."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    CustomerUpdate,
    InvalidInputError,
    UserCreate,
    UserUpdate,
    customers,
    ownership,
    sessions,
    users,
)
from app_db.security.tokens import hash_token
from tests.factories import PASSWORD, make_user, password_hash

MARKER = "Zq9xMarker"  # a token or password put in the wrong field, say


async def test_reprs_show_no_hash(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    token, session = await sessions.issue(db_session, user.id)
    found = await sessions.validate(db_session, token)
    assert found is not None

    shown = [repr(user), str(user), repr(session), str(session), *map(repr, found)]

    for text in shown:
        assert password_hash() not in text
        assert "password_hash" not in text
        assert "token_hash" not in text
        assert str(hash_token(token)) not in text
        assert token not in text
    assert user.email in repr(user)  # the repr still shows what it is


async def test_input_built_without_validation_is_validated(db_session: AsyncSession) -> None:
    user = await make_user(db_session)
    unchecked = CustomerCreate.model_construct(name="Acme", email="not-an-email", phone="DROP")

    with pytest.raises(InvalidInputError) as created:
        await customers.create(db_session, unchecked)
    with pytest.raises(InvalidInputError) as signed_up:
        await users.create(
            db_session,
            UserCreate.model_construct(email="b@example.com", password=SecretStr("password")),
        )
    with pytest.raises(InvalidInputError):
        await users.update(db_session, user.id, UserUpdate.model_construct(email="nope"))
    with pytest.raises(InvalidInputError):
        await customers.update(db_session, uuid.uuid4(), CustomerUpdate.model_construct(phone="x"))
    assert (await customers.list(db_session)).items == []
    with pytest.raises(InvalidInputError) as imported:  # a refused COPY ends the transaction
        await customers.bulk_import(db_session, [CustomerCreate(name="Fine"), unchecked])

    assert created.value.field == "email"
    assert {d["field"] for d in created.value.details} == {"email", "phone"}
    assert (imported.value.position, imported.value.field) == (1, "email")
    assert signed_up.value.field == "password"


async def test_a_change_after_validation_is_validated_too(db_session: AsyncSession) -> None:
    customer = CustomerCreate(name="Acme", email="a@example.com")

    with pytest.raises(ValidationError):
        customer.email = "not an email"

    assert customer.email == "a@example.com"
    assert (await customers.create(db_session, customer)).email == "a@example.com"


async def test_validated_input_is_not_validated_twice(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = CustomerCreate(name="Acme", email="a@example.com")
    unchecked = CustomerCreate.model_construct(name="Globex", email="b@example.com")
    validations: list[object] = []
    real = CustomerCreate.model_validate

    def counting(data: object, **kwargs: object) -> CustomerCreate:
        validations.append(data)
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(CustomerCreate, "model_validate", counting)
    await customers.create(db_session, checked)
    await customers.create(db_session, unchecked)

    assert validations == [{"name": "Globex", "email": "b@example.com"}]


Call = Callable[[AsyncSession, uuid.UUID], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "sessions.issue ip": lambda db, uid: sessions.issue(db, uid, ip=MARKER),
    "users.authenticate ip": lambda db, _: users.authenticate(db, "a@b.co", "x" * 8, ip=MARKER),
    "users.create email": lambda db, _: users.create(
        db,
        {"email": f"{MARKER}<@example.com", "password": "a long pass phrase"},  # type: ignore[arg-type]
    ),
    "users.create idna": lambda db, _: users.create(
        db,
        {"email": f"a@xn--{MARKER}.com", "password": "a long pass phrase"},  # type: ignore[arg-type]
    ),
    "users.create password": lambda db, _: users.create(
        db,
        {"email": "a@example.com", "password": f"{MARKER}\ud800"},  # type: ignore[arg-type]
    ),
    "users.set_password": lambda db, uid: users.set_password(db, uid, "a"),
    "customers.create phone": lambda db, _: customers.create(
        db,
        {"name": "Acme", "phone": f"+1 {MARKER}"},  # type: ignore[arg-type]
    ),
    "customers.create name": lambda db, _: customers.create(
        db,
        {"name": f"{MARKER}\x00"},  # type: ignore[arg-type]
    ),
    "customers.list search": lambda db, _: customers.list(db, search=MARKER * 30),
    "customers.list cursor": lambda db, _: customers.list(db, cursor=MARKER),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_errors_do_not_repeat_the_rejected_input(
    db_session: AsyncSession, call: Call
) -> None:
    user = await make_user(db_session)

    with pytest.raises((InvalidInputError, ValidationError)) as caught:
        await call(db_session, user.id)

    assert MARKER not in str(caught.value)
    assert MARKER not in repr(getattr(caught.value, "details", None))
    assert PASSWORD not in str(caught.value)


NOT_AN_ID = "Zq9x-not-a-uuid"
ID_CALLS: dict[str, Call] = {
    "users.get": lambda db, _: users.get(db, NOT_AN_ID),  # type: ignore[arg-type]
    "users.update": lambda db, _: users.update(db, NOT_AN_ID, UserUpdate(display_name="x")),  # type: ignore[arg-type]
    "users.set_password": lambda db, _: users.set_password(db, NOT_AN_ID, "a long passphrase"),  # type: ignore[arg-type]
    "users.deactivate": lambda db, _: users.deactivate(db, NOT_AN_ID),  # type: ignore[arg-type]
    "users.delete": lambda db, _: users.delete(db, NOT_AN_ID),  # type: ignore[arg-type]
    "users.request_verification": lambda db, _: users.request_verification(db, NOT_AN_ID),  # type: ignore[arg-type]
    "sessions.issue": lambda db, _: sessions.issue(db, NOT_AN_ID),  # type: ignore[arg-type]
    "sessions.revoke_all": lambda db, _: sessions.revoke_all(db, NOT_AN_ID),  # type: ignore[arg-type]
    "sessions.revoke_by_id": lambda db, uid: sessions.revoke_by_id(db, uid, NOT_AN_ID),  # type: ignore[arg-type]
    "sessions.list_for_user": lambda db, _: sessions.list_for_user(db, NOT_AN_ID),  # type: ignore[arg-type]
    "customers.get": lambda db, _: customers.get(db, NOT_AN_ID),  # type: ignore[arg-type]
    "customers.update": lambda db, _: customers.update(db, NOT_AN_ID, CustomerUpdate(name="x")),  # type: ignore[arg-type]
    "customers.delete": lambda db, _: customers.delete(db, NOT_AN_ID),  # type: ignore[arg-type]
    "ownership.scope": lambda db, _: ownership.scope(db, NOT_AN_ID),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", ID_CALLS.values(), ids=ID_CALLS.keys())
async def test_an_id_that_is_not_a_uuid_is_refused_typed(
    db_session: AsyncSession, call: Call
) -> None:
    user = await make_user(db_session)

    with pytest.raises(InvalidInputError) as caught:
        await call(db_session, user.id)

    assert caught.value.field is not None
    assert caught.value.field.endswith("_id")
    assert NOT_AN_ID not in str(caught.value)


async def test_an_id_as_text_is_taken(db_session: AsyncSession) -> None:
    user = await make_user(db_session)

    assert await users.get(db_session, str(user.id)) is user  # type: ignore[arg-type]
