"""Column types and validated field types shared by the models."""

import os
import time
import uuid
from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

EMAIL_MAX_LENGTH = 320


class TZDateTime(TypeDecorator[datetime]):
    """``timestamptz`` that refuses naive datetimes instead of guessing their zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError("naive datetime refused: give a timezone-aware datetime")
        return value


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (RFC 9562 version 7), so new keys land at the index's end."""
    value = time.time_ns() // 1_000_000 << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF000 << 64) | 0x7000 << 64
    value = value & ~(0xC << 60) | 0x8 << 60
    return uuid.UUID(int=value)


def _postgres_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def normalize_email(value: str) -> str:
    """Return the email in normalised form (Unicode NFC, domain lower-cased); raise if invalid."""
    try:
        return validate_email(
            _postgres_text(value), check_deliverability=False, allow_smtputf8=True
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


PostgresText = AfterValidator(_postgres_text)
"""Refuse what a PostgreSQL ``text`` column cannot hold: NUL characters and lone surrogates."""

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=EMAIL_MAX_LENGTH),
    AfterValidator(normalize_email),
]
