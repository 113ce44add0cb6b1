"""The Create/Read/Update schemas validate input before anything reaches the database."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app_db.models import (
    CustomerCreate,
    CustomerUpdate,
    SessionCreate,
    SessionUpdate,
    UserCreate,
    UserRead,
    UserUpdate,
)


def test_user_email_is_normalised_and_domain_lowercased() -> None:
    user = UserCreate.model_validate({"email": "  Ada@EXAMPLE.com ", "password": "long enough"})

    assert user.email == "Ada@example.com"


def test_user_password_is_secret_and_bounded() -> None:
    user = UserCreate.model_validate({"email": "a@example.com", "password": "long enough"})

    assert "long enough" not in repr(user)
    with pytest.raises(ValidationError, match="password"):
        UserCreate.model_validate({"email": "a@example.com", "password": "short"})


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "a@", "@example.com", "a@b@c.com", "a\x00@b.com"]
)
def test_invalid_email_is_refused(email: str) -> None:
    with pytest.raises(ValidationError, match="email"):
        UserCreate.model_validate({"email": email, "password": "long enough"})


def test_unicode_email_is_accepted_in_nfc_form() -> None:
    decomposed = "jose\u0301@example.com"

    user = UserCreate.model_validate({"email": decomposed, "password": "long enough"})

    assert user.email == "jos\u00e9@example.com"


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 201, "nul\x00byte", "lone \ud800 surrogate"],
    ids=["empty", "blank", "too-long", "nul", "surrogate"],
)
def test_customer_name_is_refused_when_postgres_could_not_store_it(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        CustomerCreate(name=name)


def test_customer_fields_are_stripped_and_optional() -> None:
    customer = CustomerCreate.model_validate(
        {"name": "  Acme  ", "email": "Grace@Acme.COM", "phone": "+44 20 7946 0000"}
    )

    assert (customer.name, customer.email, customer.phone) == (
        "Acme",
        "Grace@acme.com",
        "+44 20 7946 0000",
    )
    assert customer.owner_id is None


@pytest.mark.parametrize("phone", ["12", "call me", "+1" + "2" * 40])
def test_customer_phone_is_checked(phone: str) -> None:
    with pytest.raises(ValidationError, match="phone"):
        CustomerCreate.model_validate({"name": "Acme", "phone": phone})


def test_update_schemas_are_partial() -> None:
    assert CustomerUpdate().model_dump(exclude_unset=True) == {}
    assert UserUpdate(display_name="Ada").model_dump(exclude_unset=True) == {"display_name": "Ada"}


def test_naive_datetimes_are_refused_by_schemas() -> None:
    naive = datetime(2030, 1, 1)  # noqa: DTZ001

    with pytest.raises(ValidationError, match="timezone"):
        SessionCreate(user_id=uuid.uuid4(), expires_at=naive)
    with pytest.raises(ValidationError, match="timezone"):
        SessionUpdate(revoked_at=naive)


def test_session_ip_is_validated_and_normalised() -> None:
    expires_at = datetime.now(UTC) + timedelta(hours=1)

    session = SessionCreate(user_id=uuid.uuid4(), expires_at=expires_at, ip="2001:DB8::1")

    assert session.ip == "2001:db8::1"
    with pytest.raises(ValidationError, match="ip"):
        SessionCreate(user_id=uuid.uuid4(), expires_at=expires_at, ip="999.1.1.1")


def test_read_schema_never_carries_the_password_hash() -> None:
    assert "password_hash" not in UserRead.model_fields
    assert "password" not in UserRead.model_fields


@pytest.mark.parametrize(
    ("model", "field", "limit", "extra"),
    [
        (CustomerCreate, "name", 200, {}),
        (CustomerCreate, "phone", 32, {"name": "x"}),
        (UserUpdate, "display_name", 100, {}),
    ],
)
def test_a_field_longer_than_its_schema_says_is_refused_even_when_white_space_would_go(
    model: type[CustomerCreate | UserUpdate], field: str, limit: int, extra: dict[str, str]
) -> None:
    """``maxLength`` is about what the client sends: a schemathesis run found a 201-character
    name accepted because its first character (U+0085) is stripped as white space."""
    body = "1" * limit
    assert getattr(model.model_validate({**extra, field: body}), field) == body
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**extra, field: "\u0085" + body})
    assert refused.value.errors()[0]["type"] == "string_too_long"
    assert refused.value.errors()[0]["loc"] == (field,)
