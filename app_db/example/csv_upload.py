"""Read an uploaded CSV of customers strictly, in full, before any database work.

The header names the columns (``name`` and optionally ``email``, ``phone``, ``owner_id``).
A refusal names its line (the header is line 1): bytes that are not UTF-8, a field longer than
``csv.field_size_limit()``, a quote left open, a row whose cell count differs from the
header's, or a value that ``CustomerCreate`` refuses.
"""

import csv
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from pydantic import ValidationError

from app_db import CustomerCreate, InvalidInputError

COLUMNS = tuple(CustomerCreate.model_fields)


class CsvError(ValueError):
    """Raise when an upload is refused: ``line`` is 1-based, ``row`` counts data rows from 0."""

    def __init__(
        self, message: str, *, line: int, row: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.row = row
        self.field = field


class ImportTimeout(Exception):  # noqa: N818 - named for what the client is told
    """Raise when an import runs past its time limit."""


class CustomerLine(NamedTuple):
    """One validated row and the line it starts on; a tuple keeps a large file small."""

    line: int
    name: str
    email: str | None
    phone: str | None
    owner_id: uuid.UUID | None

    def customer(self) -> CustomerCreate:
        """Return the row as a ``CustomerCreate`` without validating it a second time."""
        return CustomerCreate.model_construct(
            name=self.name, email=self.email, phone=self.phone, owner_id=self.owner_id
        )


def read_customers(file: BinaryIO, *, deadline: float) -> list[CustomerLine]:
    """Parse and validate every row; raise ``CsvError`` at the first bad one.

    Raise ``ImportTimeout`` once ``time.monotonic()`` passes ``deadline``. It blocks (email
    validation costs tens of microseconds a row): run it in a worker thread.
    """
    rows = []
    for row, line, cells in records(file):
        if time.monotonic() > deadline:
            raise ImportTimeout
        try:
            data = CustomerCreate.model_validate(cells)
        except ValidationError as invalid:
            error = InvalidInputError.from_validation(invalid)
            message = f"field {error.field!r}: {error.details[0]['message']}"
            raise CsvError(message, line=line, row=row, field=error.field) from None
        rows.append(CustomerLine(line, data.name, data.email, data.phone, data.owner_id))
    return rows


def records(file: BinaryIO) -> Iterator[tuple[int, int, dict[str, str]]]:
    """Yield ``(row, line, cells)`` per data row: cells by column name, empty ones left out."""
    reader = csv.reader(utf8_lines(file), strict=True)
    header: list[str] | None = None
    row = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader, None)
        except UnicodeDecodeError:
            raise CsvError("not UTF-8", line=reader.line_num + 1, row=row) from None
        except csv.Error as error:
            raise CsvError(str(error), line=line, row=row) from None
        if cells is None:
            return
        if not cells:
            continue
        if header is None:
            header = checked_header(cells, line)
            continue
        if len(cells) != len(header):
            message = f"{len(cells)} cells, but the header has {len(header)}"
            raise CsvError(message, line=line, row=row)
        yield row, line, {name: value for name, value in zip(header, cells, strict=True) if value}
        row += 1


def checked_header(cells: list[str], line: int) -> list[str]:
    """Return the column names; refuse unknown or repeated ones, which would lose data."""
    names = [cell.strip() for cell in cells]
    for position, name in enumerate(names):
        if name not in COLUMNS:
            expected = ", ".join(COLUMNS)
            raise CsvError(f"unknown column {name!r}; expected some of {expected}", line=line)
        if name in names[:position]:
            raise CsvError(f"column {name!r} appears twice", line=line)
    return names


def utf8_lines(file: BinaryIO) -> Iterator[str]:
    """Decode one line at a time, so that an error has a line; drop a leading BOM."""
    encoding = "utf-8-sig"
    for raw in file:
        yield raw.decode(encoding)
        encoding = "utf-8"
