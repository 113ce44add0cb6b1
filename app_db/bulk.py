"""Bulk import of customers through PostgreSQL COPY, in bounded chunks."""

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.errors import error_for_constraint, violated_constraint
from app_db.models import CustomerCreate
from app_db.models.types import uuid7
from app_db.validation import validated

DEFAULT_CHUNK_ROWS = 5000
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
    At most ``chunk_rows`` rows are held in memory at once. The load belongs to the caller's
    transaction: roll it back and nothing stays. A bad row raises ``InvalidInputError`` whose
    ``position`` is the row's 0-based index in ``rows`` and whose ``field`` names the field.
    """
    driver = await _driver_in_transaction(db)
    await db.flush()
    loaded = 0
    chunk: list[tuple[Any, ...]] = []
    async for position, row in _numbered(rows):
        data = validated(CustomerCreate, row, position=position)
        chunk.append((uuid7(), data.name, data.email, data.phone, data.owner_id))
        if len(chunk) >= chunk_rows:
            loaded += await _copy(driver, chunk)
            chunk = []
    if chunk:
        loaded += await _copy(driver, chunk)
    return loaded


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


async def _copy(driver: asyncpg.Connection, chunk: list[tuple[Any, ...]]) -> int:
    try:
        await driver.copy_records_to_table("customers", records=chunk, columns=_COLUMNS)
    except asyncpg.IntegrityConstraintViolationError as exc:
        typed = error_for_constraint(violated_constraint(exc))
        if typed is None:
            raise
        raise typed from exc
    return len(chunk)


async def _numbered(
    rows: Iterable[CustomerRow] | AsyncIterable[CustomerRow],
) -> AsyncIterator[tuple[int, CustomerRow]]:
    if isinstance(rows, AsyncIterable):
        position = 0
        async for row in rows:
            yield position, row
            position += 1
    else:
        for position, row in enumerate(rows):
            yield position, row
