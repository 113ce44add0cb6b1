"""Column types and validated field types shared by the models."""

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, StringConstraints, TypeAdapter, WithJsonSchema
from pydantic_core import PydanticCustomError
from sqlalchemy import DateTime
from sqlalchemy.dialects.postgresql import INET
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


class IPAddressType(TypeDecorator[str]):
    """``inet`` read back as the address's text, the form the schemas use."""

    impl = INET
    cache_ok = True

    def process_result_value(self, value: object, dialect: Dialect) -> str | None:  # noqa: ARG002
        return None if value is None else str(value)


class _UUID7:
    """RFC 9562 version 7 with a 12-bit counter: keys made by one process keep their order."""

    def __init__(self) -> None:
        self._millis = 0
        self._counter = 0
        self._lock = threading.Lock()

    def __call__(self) -> uuid.UUID:
        random = int.from_bytes(os.urandom(8), "big")
        now = time.time_ns() // 1_000_000
        with self._lock:
            if now > self._millis:
                self._millis, self._counter = now, random >> 53  # 11 random bits: room to count
            elif self._counter < 0xFFF:
                self._counter += 1
            else:
                self._millis, self._counter = self._millis + 1, 0
            millis, counter = self._millis, self._counter
        rand_b = random & (1 << 62) - 1
        return uuid.UUID(int=millis << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b)


uuid7 = _UUID7()
"""Return a time-ordered UUID (version 7), so new keys land at the index's end, in order."""


def postgres_text(value: str) -> str:
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
            postgres_text(value), check_deliverability=False, allow_smtputf8=True
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {_without_input(str(exc))}") from None


def _without_input(message: str) -> str:
    """Keep the sentence of an email_validator message, not the characters or parts it quotes.

    Its messages name what was wrong after a colon or in parentheses (``... before the
    @-sign: SPACE.``, ``... not valid IDNA (... 'xn--…' ...)``): an error must not repeat input.
    """
    return _QUOTED_PART.split(message, maxsplit=1)[0].rstrip(" .") + "."


_QUOTED_PART = re.compile(r":| \(")


PostgresText = AfterValidator(postgres_text)
"""Refuse what a PostgreSQL ``text`` column cannot hold: NUL characters and lone surrogates."""


@dataclass(frozen=True)
class Described:
    """Add keywords to a field's JSON schema: what its validators check, said to clients.

    An OpenAPI document that says less than the server checks makes clients (and schema-driven
    testers) send what the schema allows and the server refuses.
    """

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        described: dict[str, Any] = handler(schema)
        return described | dict(self.keywords)


def described(**keywords: Any) -> Described:
    """Return the annotation that adds these JSON schema keywords (``minLength=3``)."""
    return Described(tuple(keywords.items()))


def at_most_as_sent(max_length: int) -> BeforeValidator:
    """Refuse a string longer than ``max_length`` as the client sent it, before white space is
    stripped: the schema's ``maxLength`` is about what is sent (a fuzzer had 201 characters
    accepted for a 200-character name whose first was white space)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": max_length},
            )
        return value

    return BeforeValidator(check)


NOT_BLANK = described(pattern="^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")
"""Some character that is not white space (what remains once stripped), and no NUL."""
NO_NUL = described(pattern="^[^\\u0000]*$")


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


EMAIL_PATTERN = (
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s.]*[^@\\s.0-9-]"
    + "".join(f"(?<!\\.{_any_case(name)})" for name in SPECIAL_USE_DOMAIN_NAMES)
    + "$"
)
"""What ``normalize_email`` accepts beyond an email's format: a domain with a dot whose last
label ends with a letter, not under a special-use name (``.test``, ``.local``...), where mail
cannot be delivered."""

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=EMAIL_MAX_LENGTH),
    at_most_as_sent(EMAIL_MAX_LENGTH),
    AfterValidator(normalize_email),
    described(format="email", minLength=3, pattern=EMAIL_PATTERN),
]


def stored_as(annotation: Any) -> WithJsonSchema:
    """Return the JSON schema of ``annotation``, for a read field that does not re-check it.

    A read schema's values come from rows that app_db checked on the way in. Its fields
    keep the JSON schema of the input type, so clients and the OpenAPI document see the
    same contract, and validate as the plain type (a ``str`` is still a ``str``): building
    ``UserRead`` from a row does not run the email validator, the IP parser or a constraint
    again (about 30 µs of the 50 µs it took, for an email).
    """
    return WithJsonSchema(TypeAdapter(annotation).json_schema())


StoredEmail = Annotated[str, stored_as(Email)]
"""An email read back from the database: ``Email``'s schema, checked as a ``str`` only."""
