"""Hot reads in one round trip on the session's own connection, without ORM query overhead.

The statement goes to asyncpg directly, as a prepared statement from the driver's cache,
unless the engine turned this off (``app_db_driver_reads``, off behind PgBouncer); then the
same SQL runs through SQLAlchemy. Rows become ORM instances that belong to the session, as if
a query had loaded them. Pending ORM changes are flushed first, as autoflush would.

When SQLAlchemy has not yet sent ``BEGIN`` on the connection (it does so lazily, with its
first statement), a statement sent here runs on its own, in autocommit, like any single
statement: it costs no BEGIN round trip and it sees all committed data.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

DRIVER_READS = "app_db_driver_reads"

M = TypeVar("M", bound=SQLModel)


class Row(Protocol):
    """A result row: an asyncpg ``Record`` or a SQLAlchemy ``RowMapping``."""

    def __getitem__(self, key: str, /) -> Any: ...


_DISCONNECTS = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    ConnectionError,
)


async def fetch(db: AsyncSession, sql: str, *args: object) -> Sequence[Row]:
    """Run one statement on the session's connection and return its rows as mappings."""
    if db.new or db.dirty or db.deleted:
        await db.flush()
    connection = await db.connection()
    if not connection.sync_connection.get_execution_options().get(DRIVER_READS, True):  # type: ignore[union-attr]
        result = await connection.exec_driver_sql(sql, args)
        return list(result.mappings())
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    try:
        rows: Sequence[Row] = await driver.fetch(sql, *args)
    except _DISCONNECTS as exc:
        await _invalidate(connection, exc)
        raise
    return rows


async def fetchrow(db: AsyncSession, sql: str, *args: object) -> Row | None:
    """Run one statement on the session's connection and return its first row, if any."""
    rows = await fetch(db, sql, *args)
    return rows[0] if rows else None


def load(db: AsyncSession, model: type[M], values: Mapping[str, Any]) -> M:
    """Return the session's instance for this row: the one in its identity map, or a new one.

    A new instance is built without validation (the row comes from our own schema) and added
    to the session as persistent, so changes to it are flushed like those of a loaded one.
    """
    mapper = class_mapper(model)  # configures the mappers on first use
    key = mapper.identity_key_from_primary_key(
        tuple(values[str(c.key)] for c in mapper.primary_key)
    )
    existing: M | None = db.identity_map.get(key)
    if existing is not None:
        for name, value in values.items():
            set_committed_value(existing, name, value)
        return existing
    instance: M = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    make_transient_to_detached(instance)
    db.add(instance)
    return instance


async def _invalidate(connection: AsyncConnection, error: BaseException) -> None:
    """Discard a connection the driver found broken, so the pool never hands it out again."""
    await connection.invalidate(error if isinstance(error, Exception) else None)
