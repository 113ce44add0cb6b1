"""Bulk import of customers through PostgreSQL COPY, in bounded chunks."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import driver_transaction
from app_db.errors import AppDBError, InvalidInputError, typed_error, typed_errors
from app_db.models import CustomerCreate
from app_db.models.types import uuid7
from app_db.observe.spans import traced_as
from app_db.ownership import owner_of
from app_db.validation import validated

NOT_THE_OWNER = "must be the owner the transaction is scoped to, or none"

DEFAULT_CHUNK_ROWS = 50_000
STAGED_ROWS = 5_000
"""The rows of one staged batch, held in memory while the batch before it is moved."""
_YIELD_EVERY = 500
_COLUMNS = ("id", "name", "email", "phone", "owner_id")
_COPY_LINE = re.compile(r"^COPY \S+, \S+ (\d+)")
"""The error context of a row that COPY refused: ``COPY customers, line 7001`` (1-based)."""
_OWNER_KEY = re.compile(r"\(owner_id\)=\(([^)]*)\)")
"""The key in a foreign key error's detail: ``Key (owner_id)=(…) is not present …``."""

CustomerRow = CustomerCreate | Mapping[str, Any]


@traced_as("app_db.customers.bulk_import")  # public as customers.bulk_import
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
    roll it back and nothing stays. A row refused by validation or by the database raises
    ``InvalidInputError`` whose ``position`` is the row's 0-based index in ``rows`` and whose
    ``field`` names the field. What ``rows`` itself raises comes out unchanged.

    In a session scoped to an owner, every row gets that owner (a row naming another one is
    refused). PostgreSQL refuses ``COPY FROM`` into a table whose row-level security applies to
    the role (every role but superusers, ``BYPASSRLS`` roles, and table owners without
    ``FORCE``): for those, rows go in batches of up to ``STAGED_ROWS`` (or ``chunk_rows``, if
    smaller), each copied into a temporary table and moved with one ``INSERT ... SELECT``,
    which the policy checks, while the next batch is validated. That needs the ``TEMPORARY``
    privilege on the database.
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
    owner = owner_of(db)
    if await driver.fetchval(POLICY_APPLIES_SQL):
        return await _staged(driver, source, min(chunk_rows, STAGED_ROWS), owner)
    loaded = 0
    while True:
        chunk = _Chunk(loaded, owner)
        records = (
            chunk.async_records(source, chunk_rows)
            if isinstance(source, AsyncIterator)
            else chunk.records(source, chunk_rows)
        )
        sent = await _copy(driver, records, chunk)
        loaded += sent
        if sent < chunk_rows:
            return loaded


async def _staged(
    driver: asyncpg.Connection,
    source: Iterator[CustomerRow] | AsyncIterator[CustomerRow],
    batch_rows: int,
    owner: uuid.UUID | None,
) -> int:
    """Load through the staging table, validating each batch while the last one is moved.

    The server's ``INSERT ... SELECT`` of one batch and this process's validation of the next
    overlap, as they do in a streamed COPY; a batch is held in memory meanwhile, which is why
    batches are smaller than COPY's chunks. A row of an earlier batch that the database refuses
    is reported before a bad row of the batch being validated.
    """
    await driver.execute(STAGING_SQL)
    chunk = _Chunk(0, owner)
    records = await chunk.collected(source, batch_rows)
    loaded = 0
    while records:
        await _copy(driver, records, chunk, table=STAGING)
        loaded += len(records)
        if len(records) < batch_rows:
            await _move(driver, chunk)
            return loaded
        following = _Chunk(loaded, owner)
        collecting = asyncio.ensure_future(following.collected(source, batch_rows))
        try:
            await _move(driver, chunk)
        except BaseException:
            _abandon(collecting)
            raise
        chunk, records = following, await collecting
    return loaded


def _abandon(task: "asyncio.Future[Any]") -> None:
    """Stop a batch's validation whose result no longer matters, its error included."""
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: asyncio would log it as never retrieved
    else:
        task.cancel()


class _Chunk:
    """The rows of one COPY: where they start in the caller's input, and each owner's first row.

    PostgreSQL checks foreign keys at the end of the COPY and names the missing key, not the
    line, so the first row of each ``owner_id`` is remembered (at most one entry per row).
    """

    __slots__ = ("owners", "scope", "start")

    def __init__(self, start: int, scope: uuid.UUID | None = None) -> None:
        self.start = start
        self.scope = scope
        self.owners: dict[uuid.UUID, int] = {}

    def records(self, source: Iterator[CustomerRow], limit: int) -> Iterator[tuple[Any, ...]]:
        for position in range(self.start, self.start + limit):
            try:
                row = next(source)
            except StopIteration:
                return
            except Exception as exc:
                raise _CallerError(exc) from None
            yield self._record(position, row)

    async def async_records(
        self, source: AsyncIterator[CustomerRow], limit: int
    ) -> AsyncIterator[tuple[Any, ...]]:
        for position in range(self.start, self.start + limit):
            try:
                row = await anext(source)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise _CallerError(exc) from None
            yield self._record(position, row)

    async def collected(
        self, source: Iterator[CustomerRow] | AsyncIterator[CustomerRow], limit: int
    ) -> list[tuple[Any, ...]]:
        """Return the records of up to ``limit`` rows, letting other tasks run now and then."""
        if isinstance(source, AsyncIterator):
            return [record async for record in self.async_records(source, limit)]
        batch = []
        for record in self.records(source, limit):
            batch.append(record)
            if len(batch) % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return batch

    def _record(self, position: int, row: CustomerRow) -> tuple[Any, ...]:
        data = validated(CustomerCreate, row, position=position)
        owner = data.owner_id
        if self.scope is not None:
            if owner is not None and owner != self.scope:
                raise InvalidInputError(NOT_THE_OWNER, field="owner_id", position=position)
            owner = self.scope
        if owner is not None:
            self.owners.setdefault(owner, position)
        return (uuid7(), data.name, data.email, data.phone, owner)

    def refusal(self, error: asyncpg.IntegrityConstraintViolationError) -> AppDBError | None:
        """Return the typed error for a row the database refused, with the row's position."""
        typed = typed_error(error)
        if not isinstance(typed, InvalidInputError):
            return typed
        message = str(typed.details[0]["message"])
        line = _COPY_LINE.match(error.context or "")
        position = self.start + int(line[1]) - 1 if line else None
        if isinstance(error, asyncpg.ForeignKeyViolationError):
            missing = _missing_owner(error.detail)
            if missing is None and len(self.owners) == 1:  # the key is withheld under RLS
                missing = next(iter(self.owners))
            if missing is not None:
                message = f"no user has the id {missing}"
                position = self.owners.get(missing, position)
        return InvalidInputError(message, field=typed.field, position=position)


def _missing_owner(detail: str | None) -> uuid.UUID | None:
    key = _OWNER_KEY.search(detail or "")
    try:
        return uuid.UUID(key[1]) if key else None
    except ValueError:
        return None


async def _driver_in_transaction(db: AsyncSession) -> asyncpg.Connection:
    """Return the session's asyncpg connection, with the session's transaction begun on it.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; a COPY sent to
    the driver before that would run outside the transaction and commit by itself.
    """
    connection = await db.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not await driver_transaction.begin_on_adapter(raw.dbapi_connection):  # a later SQLAlchemy
        await connection.execute(text("SELECT 1"))
    if not driver.is_in_transaction():
        raise RuntimeError("bulk_import needs the session's transaction to be open")
    return driver


POLICY_APPLIES_SQL = "SELECT row_security_active('customers')"
STAGING = "app_db_customers_import"
STAGING_SQL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING}
    (LIKE customers INCLUDING DEFAULTS INCLUDING CONSTRAINTS) ON COMMIT DROP;
TRUNCATE {STAGING}
"""
"""A table of the transaction's own for the rows of one chunk, with the checks of
``customers`` (so a refused row still has its line), dropped at the end of the transaction."""
MOVE_SQL = f"""
INSERT INTO customers ({", ".join(_COLUMNS)}) SELECT {", ".join(_COLUMNS)} FROM {STAGING};
TRUNCATE {STAGING}
"""  # noqa: S608 - built from constants only


async def _move(driver: asyncpg.Connection, chunk: _Chunk) -> None:
    """Move the staged rows of ``chunk`` into ``customers`` at once, and empty the stage."""
    try:
        await driver.execute(MOVE_SQL)
    except asyncpg.IntegrityConstraintViolationError as exc:
        refusal = chunk.refusal(exc)
        if refusal is None:
            raise
        raise refusal from exc


async def _copy(
    driver: asyncpg.Connection,
    records: Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]],
    chunk: _Chunk,
    *,
    table: str = "customers",
) -> int:
    """Stream one chunk through COPY while it is being validated; return how many rows went."""
    try:
        status = await driver.copy_records_to_table(table, records=records, columns=_COLUMNS)
    except asyncpg.IntegrityConstraintViolationError as exc:
        refusal = chunk.refusal(exc)
        if refusal is None:
            raise
        raise refusal from exc
    return int(status.rpartition(" ")[2])
