"""Keyset pagination: pages ordered by (created_at, id), with opaque cursors."""

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from pydantic import BaseModel

from app_db.errors import InvalidInputError

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAYOUT = struct.Struct(">q16s")


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_cursor`` back to get the next (``None``: the last)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """Return the opaque cursor that points just past this row."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    raw = _LAYOUT.pack(micros, row_id.bytes)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Return the position a cursor points past; raise ``InvalidInputError`` if it is forged."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        micros, id_bytes = _LAYOUT.unpack(raw)
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes)
    except (ValueError, UnicodeEncodeError, binascii.Error, struct.error, OverflowError):
        raise InvalidInputError("not a cursor this API returned", field="cursor") from None
