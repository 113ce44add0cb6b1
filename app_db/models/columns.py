"""Field factories for the columns every table shares."""

from typing import Any

from sqlalchemy import func
from sqlmodel import Field

from app_db.models.types import TZDateTime, uuid7


def id_field() -> Any:
    """Return a UUIDv7 primary key, with ``gen_random_uuid()`` for rows inserted in raw SQL."""
    return Field(
        default_factory=uuid7,
        primary_key=True,
        sa_column_kwargs={"server_default": func.gen_random_uuid()},
    )


def created_at_field() -> Any:
    """Return a ``timestamptz NOT NULL DEFAULT now()`` column, filled by the server."""
    return Field(
        default=None,
        sa_type=TZDateTime,
        nullable=False,
        sa_column_kwargs={"server_default": func.now()},
    )


def updated_at_field() -> Any:
    """Return a ``timestamptz NOT NULL DEFAULT now()`` column, renewed on every ORM update."""
    return Field(
        default=None,
        sa_type=TZDateTime,
        nullable=False,
        sa_column_kwargs={"server_default": func.now(), "onupdate": func.now()},
    )
