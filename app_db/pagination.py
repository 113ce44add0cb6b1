"""Keyset pagination: pages ordered by (created_at, id), with opaque cursors."""

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from app_db.errors import InvalidInputError
from app_db.models.types import postgres_text

T = TypeVar("T")
MAX_PAGE_SIZE = 500
MAX_SEARCH_LENGTH = 200

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAYOUT = struct.Struct(">q16s")


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_cursor`` back to get the next (``None``: the last).

    Its items may be of any type (``Page[CustomerRow]`` names a page of read-only rows); to
    serve a page, build one of read schemas (``Page[CustomerRead]``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """Return the opaque cursor that points just past this row."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    raw = _LAYOUT.pack(micros, row_id.bytes)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


CURSOR_PATTERN = "^[A-Za-z0-9_-]{32}$"
"""What every cursor looks like: 24 bytes (a time and an id), base64url without padding."""
_MICROS = (
    (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
    (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Return the position a cursor points past; raise ``InvalidInputError`` if it is not one.

    A cursor of the right shape is a position, whoever made it: its time is clamped to what a
    date can hold (a page before every row, or after them all), so that no well-formed cursor
    is an error. It shows nothing but rows the caller may list anyway.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        micros, id_bytes = _LAYOUT.unpack(raw)
    except (ValueError, UnicodeEncodeError, binascii.Error, struct.error):
        raise InvalidInputError("not a cursor this API returned", field="cursor") from None
    micros = min(max(micros, _MICROS[0]), _MICROS[1])
    return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes)


def search_term(search: str) -> str:
    """Return a search term that PostgreSQL can hold; refuse a long or broken one."""
    if len(search) > MAX_SEARCH_LENGTH:
        raise InvalidInputError(f"at most {MAX_SEARCH_LENGTH} characters", field="search")
    try:
        return postgres_text(search)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="search") from None


def escape_like(term: str) -> str:
    """Return the term with LIKE's wildcards escaped, so that they match literally."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def checked_limit(limit: int) -> int:
    """Return a page size in 1..``MAX_PAGE_SIZE``; refuse any other with ``InvalidInputError``."""
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise InvalidInputError("must be an integer", field="limit")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    return limit


READ_SIZES = (11, 26, 51, 101, 201, MAX_PAGE_SIZE + 1)
"""The row counts that page statements read: a page of 10, 25, 50, 100, 200 or
``MAX_PAGE_SIZE`` rows and the one after it."""


def rows_to_read(limit: int) -> int:
    """Return how many rows a page statement reads for a page of ``limit`` (checked).

    A page needs ``limit + 1`` rows (the one after says there is a next page), rounded up to
    one of ``READ_SIZES``. The count is written into the statement, so that PostgreSQL keeps
    one plan for it (a ``LIMIT $1`` looks costly to a generic plan, and is planned again at
    every call); rounding keeps each statement to six texts, however callers choose their
    sizes. A size between them reads up to about twice the rows it needs (11 for a page of
    1, 501 for one of 201): the sizes above read exactly.
    """
    wanted = checked_limit(limit) + 1
    return next(size for size in READ_SIZES if size >= wanted)


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


K = TypeVar("K", bound=Keyed)


def page_of(rows: list[K], limit: int) -> "Page[K]":
    """Return the first ``limit`` of the rows read in key order, with the cursor of the next
    page when there were more."""
    page: Page[K]  # an unparametrized Page: no schema is built for the rows' type
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor = encode_cursor(last.created_at, last.id)
        page = Page.model_construct(items=rows[:limit], next_cursor=cursor)
    else:
        page = Page.model_construct(items=rows, next_cursor=None)
    return page
