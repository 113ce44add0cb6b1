"""Users: the accounts that log in."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, SecretStr, StringConstraints
from sqlalchemy import CheckConstraint, Index, Text, func, true
from sqlmodel import Field, col

from app_db.models.base import AppModel
from app_db.models.columns import created_at_field, id_field, updated_at_field
from app_db.models.types import EMAIL_MAX_LENGTH, Email, PostgresText

DISPLAY_NAME_MAX_LENGTH = 100
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024

DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=DISPLAY_NAME_MAX_LENGTH),
    PostgresText,
]


def _encodable(password: SecretStr) -> SecretStr:
    try:
        password.get_secret_value().encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return password


Password = Annotated[
    SecretStr,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_encodable),
]


class UserBase(AppModel):
    email: Email = Field(sa_type=Text)
    display_name: DisplayName | None = Field(default=None, sa_type=Text)


class UserCreate(UserBase):
    password: Password


class UserUpdate(AppModel):
    email: Email | None = None
    display_name: DisplayName | None = None


class UserRead(UserBase):
    id: uuid.UUID
    is_active: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime


class User(UserBase, table=True):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            f"char_length(email) BETWEEN 3 AND {EMAIL_MAX_LENGTH}", name="email_length"
        ),
        CheckConstraint(
            f"char_length(display_name) BETWEEN 1 AND {DISPLAY_NAME_MAX_LENGTH}",
            name="display_name_length",
        ),
        CheckConstraint("password_hash <> ''", name="password_hash_not_empty"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: uuid.UUID = id_field()
    password_hash: str = Field(sa_type=Text)
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


Index("uq_users_email_lower", func.lower(col(User.email)), unique=True)
