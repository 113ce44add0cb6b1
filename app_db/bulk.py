"""Bulk import of customers through PostgreSQL COPY, in bounded chunks."""

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.errors import InvalidInputError, typed_errors
from app_db.models import CustomerCreate
from app_db.models.types import uuid7
from app_db.validation import validated

DEFAULT_CHUNK_ROWS = 50_000
_COLUMNS = ("id", "name", "email", "phone", "owner_id")

CustomerRow = CustomerCreate | Mapping[str, Any]


async def bulk_import(
    db: AsyncSession,
    rows: Iterable[CustomerRow] | AsyncIterable[CustomerRow],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> int:
    """Validate and COPY customers into the table; return how many were loaded.

    Rows may be ``CustomerCreate`` objects or mappings, from a plain or an async iterable.
    Each chunk of ``chunk_rows`` rows is one COPY, streamed while its rows are validated, so
    the server loads one batch while the next is prepared, and memory stays flat (asyncpg
    buffers about half a megabyte at a time). The load belongs to the caller's transaction:
    roll it back and nothing stays. A bad row raises ``InvalidInputError`` whose ``position``
    is the row's 0-based index in ``rows`` and whose ``field`` names the field. What ``rows``
    itself raises comes out unchanged.
    """
    if chunk_rows < 1:
        raise InvalidInputError("must be at least 1", field="chunk_rows")
    source = aiter(rows) if isinstance(rows, AsyncIterable) else iter(rows)
    try:
        return await _load(db, source, chunk_rows)
    except _CallerError as carrier:
        error = carrier.error
    raise error


class _CallerError(Exception):
    """Carry what the caller's rows raised through asyncpg's COPY and the error translation.

    asyncpg would take a ``TimeoutError`` for its own timeout and replace it.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


@typed_errors
async def _load(
    db: AsyncSession, source: Iterator[CustomerRow] | AsyncIterator[CustomerRow], chunk_rows: int
) -> int:
    driver = await _driver_in_transaction(db)
    await db.flush()
    counter = itertools.count()
    loaded = 0
    while True:
        records = (
            _async_records(source, counter, chunk_rows)
            if isinstance(source, AsyncIterator)
            else _records(source, counter, chunk_rows)
        )
        sent = await _copy(driver, records)
        loaded += sent
        if sent < chunk_rows:
            return loaded


def _record(position: int, row: CustomerRow) -> tuple[Any, ...]:
    data = validated(CustomerCreate, row, position=position)
    return (uuid7(), data.name, data.email, data.phone, data.owner_id)


def _records(
    source: Iterator[CustomerRow], counter: Iterator[int], limit: int
) -> Iterator[tuple[Any, ...]]:
    for _ in range(limit):
        try:
            row = next(source)
        except StopIteration:
            return
        except Exception as exc:
            raise _CallerError(exc) from None
        yield _record(next(counter), row)


async def _async_records(
    source: AsyncIterator[CustomerRow], counter: Iterator[int], limit: int
) -> AsyncIterator[tuple[Any, ...]]:
    for _ in range(limit):
        try:
            row = await anext(source)
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise _CallerError(exc) from None
        yield _record(next(counter), row)


async def _driver_in_transaction(db: AsyncSession) -> asyncpg.Connection:
    """Return the session's asyncpg connection, with the session's transaction begun on it.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; a COPY sent to
    the driver before that would run outside the transaction and commit by itself.
    """
    connection = await db.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():
        await connection.execute(text("SELECT 1"))
    if not driver.is_in_transaction():
        raise RuntimeError("bulk_import needs the session's transaction to be open")
    return driver


async def _copy(
    driver: asyncpg.Connection,
    records: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]],
) -> int:
    """Stream one chunk through COPY while it is being validated; return how many rows went.

    A refusal by the database (a constraint) is typed by ``bulk_import``'s ``typed_errors``.
    """
    status = await driver.copy_records_to_table("customers", records=records, columns=_COLUMNS)
    return int(status.rpartition(" ")[2])
