"""Customers: the business records the application manages."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, StringConstraints
from sqlalchemy import CheckConstraint, Index, Text
from sqlmodel import Field

from app_db.models.base import AppModel, CheckedInput, StoredRead
from app_db.models.columns import created_at_field, id_field, updated_at_field
from app_db.models.types import (
    EMAIL_MAX_LENGTH,
    NOT_BLANK,
    Email,
    PostgresText,
    StoredEmail,
    at_most_as_sent,
    stored_as,
)

NAME_MAX_LENGTH = 200
PHONE_MAX_LENGTH = 32

CustomerName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    at_most_as_sent(NAME_MAX_LENGTH),
    PostgresText,
    NOT_BLANK,
]
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=PHONE_MAX_LENGTH,
        pattern=r"^\+?[0-9][0-9 ()./-]*[0-9]$",
    ),
    at_most_as_sent(PHONE_MAX_LENGTH),
]


class CustomerBase(AppModel):
    name: CustomerName = Field(sa_type=Text)
    email: Email | None = Field(default=None, sa_type=Text)
    phone: Phone | None = Field(default=None, sa_type=Text)
    owner_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")


class CustomerCreate(CustomerBase, CheckedInput):
    pass


class CustomerUpdate(CheckedInput):
    name: CustomerName | None = None
    email: Email | None = None
    phone: Phone | None = None
    owner_id: uuid.UUID | None = None


class CustomerRead(CustomerBase, StoredRead):
    # Read fields trust what the database holds (``stored_as``): the same JSON schema, no
    # validator run again. (A docstring here would change the OpenAPI schema's description.)
    name: Annotated[str, stored_as(CustomerName)]
    email: StoredEmail | None = None
    phone: Annotated[str, stored_as(Phone)] | None = None
    id: uuid.UUID
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Customer(CustomerBase, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(f"char_length(name) BETWEEN 1 AND {NAME_MAX_LENGTH}", name="name_length"),
        CheckConstraint(
            f"char_length(email) BETWEEN 3 AND {EMAIL_MAX_LENGTH}", name="email_length"
        ),
        CheckConstraint(
            f"char_length(phone) BETWEEN 3 AND {PHONE_MAX_LENGTH}", name="phone_length"
        ),
        Index("ix_customers_created_at_id", "created_at", "id"),
        Index("ix_customers_owner_id_created_at_id", "owner_id", "created_at", "id"),
        Index(
            "ix_customers_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index(
            "ix_customers_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: uuid.UUID = id_field()
    created_at: datetime = created_at_field()
    updated_at: datetime = updated_at_field()
