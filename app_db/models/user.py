"""Users: the accounts that log in."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, SecretStr, StringConstraints, ValidationInfo, field_validator
from sqlalchemy import CheckConstraint, Index, Text, func, true
from sqlmodel import Field, col

from app_db.models.base import AppModel, CheckedInput, StoredRead
from app_db.models.columns import created_at_field, id_field, updated_at_field
from app_db.models.password import PERSONAL, Password, is_personal
from app_db.models.types import (
    EMAIL_MAX_LENGTH,
    NOT_BLANK,
    Email,
    PostgresText,
    StoredEmail,
    TZDateTime,
    at_most_as_sent,
    stored_as,
)

DISPLAY_NAME_MAX_LENGTH = 100

DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=DISPLAY_NAME_MAX_LENGTH),
    at_most_as_sent(DISPLAY_NAME_MAX_LENGTH),
    PostgresText,
    NOT_BLANK,
]


class UserBase(AppModel):
    email: Email = Field(sa_type=Text)
    display_name: DisplayName | None = Field(default=None, sa_type=Text)


class UserCreate(UserBase, CheckedInput):
    password: Password

    @field_validator("password")
    @classmethod
    def _not_personal(cls, password: SecretStr, info: ValidationInfo) -> SecretStr:
        email, name = info.data.get("email"), info.data.get("display_name")
        if is_personal(password.get_secret_value(), email, name):
            raise ValueError(PERSONAL)
        return password


class UserUpdate(CheckedInput):
    email: Email | None = None
    display_name: DisplayName | None = None


class UserRead(UserBase, StoredRead):
    # Read fields trust what the database holds (``stored_as``): the same JSON schema, no
    # validator run again. (A docstring here would change the OpenAPI schema's description.)
    email: StoredEmail
    display_name: Annotated[str, stored_as(DisplayName)] | None = None
    id: uuid.UUID
    is_active: bool
    verified_at: AwareDatetime | None = None
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
        Index("ix_users_created_at_id", "created_at", "id"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: uuid.UUID = id_field()
    password_hash: str = Field(sa_type=Text, repr=False)
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    verified_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    """When the user proved they receive mail at ``email``; cleared when it changes."""
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()


Index("uq_users_email_lower", func.lower(col(User.email)), unique=True)
