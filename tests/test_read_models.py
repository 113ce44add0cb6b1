"""Read schemas trust stored values: no validator runs again, and the JSON schema is the input's."""

import ipaddress
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import customers, sessions, users
from app_db.models import (
    Customer,
    CustomerCreate,
    CustomerRead,
    Session,
    SessionCreate,
    SessionRead,
    User,
    UserCreate,
    UserRead,
)
from app_db.models import types as model_types
from app_db.models.base import StoredRead

NOW = datetime.now(UTC)
READ_AND_INPUT = [
    (UserRead, UserCreate, ("email", "display_name")),
    (CustomerRead, CustomerCreate, ("name", "email", "phone")),
    (SessionRead, SessionCreate, ("ip", "user_agent")),
]


def stored_rows() -> list[tuple[type[SQLModel], SQLModel]]:
    """Rows as the database holds them (table models take their values unchecked)."""
    user = User(
        id=uuid.uuid4(),
        email="ada@example.com",
        display_name="Ada",
        password_hash="$argon2id$stand-in",
        is_active=True,
        created_at=NOW,
        updated_at=NOW,
    )
    customer = Customer(
        id=uuid.uuid4(),
        name="Analytical Engines Ltd",
        email="orders@example.com",
        phone="+44 20 7946 0000",
        owner_id=user.id,
        created_at=NOW,
        updated_at=NOW,
    )
    session = Session(
        id=uuid.uuid4(),
        user_id=user.id,
        ip="192.0.2.7",
        user_agent="curl/8",
        token_hash=b"\0" * 32,
        created_at=NOW,
        expires_at=NOW,
        last_seen_at=NOW,
    )
    return [(UserRead, user), (CustomerRead, customer), (SessionRead, session)]


@pytest.mark.parametrize(("read", "given", "fields"), READ_AND_INPUT)
def test_read_fields_keep_the_input_fields_json_schema(
    read: type[SQLModel], given: type[SQLModel], fields: tuple[str, ...]
) -> None:
    """OpenAPI clients see the same contract for a field whether they send or receive it."""
    read_schema = read.model_json_schema(mode="serialization")["properties"]
    input_schema = given.model_json_schema()["properties"]
    for field in fields:
        assert read_schema[field] == input_schema[field], field


class ValidatedAgainError(Exception):
    """Not a ValueError, which pydantic would turn into a ValidationError: it propagates."""


def _refuse(*_: Any, **__: Any) -> Any:
    raise ValidatedAgainError


def test_building_read_models_from_rows_runs_no_validator_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_types, "validate_email", _refuse)
    monkeypatch.setattr(ipaddress, "ip_address", _refuse)

    for read, row in stored_rows():
        built = read.model_validate(row)
        assert built.model_dump() == {name: getattr(row, name) for name in built.model_dump()}

    # The stand-ins are live: input schemas do reach them.
    with pytest.raises(ValidatedAgainError):
        UserCreate.model_validate({"email": "ada@example.com", "password": "a long passphrase"})
    with pytest.raises(ValidatedAgainError):
        SessionCreate.model_validate({"user_id": uuid.uuid4(), "ip": "::1", "expires_at": NOW})


def test_a_read_model_still_refuses_a_value_of_the_wrong_type() -> None:
    values = {"email": 5, "id": uuid.uuid4(), "is_active": True}
    with pytest.raises(ValidationError, match="email"):
        UserRead.model_validate(values | {"created_at": NOW, "updated_at": NOW})
    with pytest.raises(ValidationError, match="created_at"):
        UserRead.model_validate(values | {"email": "a@example.com", "created_at": "yesterday"})


class _NoValidation:
    def validate_python(self, *_: Any, **__: Any) -> Any:
        raise ValidatedAgainError


async def test_rows_the_database_returned_become_read_models_without_validation(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await users.create(
        db_session, UserCreate(email="ada@example.com", password=SecretStr("a long passphrase"))
    )
    customer = await customers.create(
        db_session, CustomerCreate(name="Engines", email="e@example.com", owner_id=user.id)
    )
    await sessions.issue(db_session, user.id, ip="192.0.2.7", user_agent="curl/8")
    await db_session.commit()  # every row as the database holds it, loaded again
    loaded: list[tuple[type[StoredRead], object]] = [
        (UserRead, await users.get(db_session, user.id)),
        (CustomerRead, await customers.get(db_session, customer.id)),
        (SessionRead, (await sessions.list_for_user(db_session, user.id))[0]),
        (UserRead, (await users.list(db_session)).items[0]),  # a page's read-only rows
        (CustomerRead, (await customers.list(db_session)).items[0]),
    ]
    validated = [
        (read, row, read.__pydantic_validator__.validate_python(row, from_attributes=True))
        for read, row in loaded
    ]

    for read, row, expected in validated:
        monkeypatch.setattr(read, "__pydantic_validator__", _NoValidation())
        built = read.model_validate(row)
        assert built.model_dump_json() == expected.model_dump_json()
        assert built.model_fields_set == expected.model_fields_set
        assert built.model_dump() == expected.model_dump()


async def test_an_instance_changed_since_it_was_loaded_is_validated(
    db_session: AsyncSession,
) -> None:
    user = await users.create(
        db_session, UserCreate(email="ada@example.com", password=SecretStr("a long passphrase"))
    )
    await db_session.commit()
    loaded = await users.get(db_session, user.id)
    assert loaded is not None
    assert UserRead.model_validate(loaded).is_active is True

    loaded.is_active = "maybe"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="is_active"):
        UserRead.model_validate(loaded)
