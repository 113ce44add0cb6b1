"""Customers: create, read, update, delete, paginated search and bulk import.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import builtins
import uuid
from dataclasses import dataclass

from sqlalchemy import delete as sql_delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import fastpath
from app_db.bulk import bulk_import
from app_db.errors import InvalidInputError, NotFoundError, typed_errors
from app_db.models import Customer, CustomerCreate, CustomerUpdate
from app_db.models.types import postgres_text
from app_db.pagination import Page, decode_cursor, encode_cursor
from app_db.validation import validated

MAX_PAGE_SIZE = 500
MAX_SEARCH_LENGTH = 200
_NOT_NULL = ("name",)
_NAMES = fastpath.column_names(Customer)
_SELECT = f"SELECT {', '.join(_NAMES)} FROM customers"  # noqa: S608

__all__ = [
    "MAX_PAGE_SIZE",
    "ListQuery",
    "bulk_import",
    "create",
    "delete",
    "get",
    "list",
    "list_query",
    "update",
]


@typed_errors
async def create(db: AsyncSession, data: CustomerCreate) -> Customer:
    """Create a customer; an unknown ``owner_id`` raises ``InvalidInputError``."""
    customer = Customer.model_validate(validated(CustomerCreate, data))
    db.add(customer)
    await db.flush()
    return customer


@typed_errors
async def get(db: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    """Return the customer with this id, or ``None``."""
    return await db.get(Customer, customer_id)


@typed_errors
async def update(db: AsyncSession, customer_id: uuid.UUID, data: CustomerUpdate) -> Customer:
    """Apply the fields set in ``data``; raise ``NotFoundError`` when there is no such customer."""
    changes = validated(CustomerUpdate, data).model_dump(exclude_unset=True)
    for field in _NOT_NULL:
        if field in changes and changes[field] is None:
            raise InvalidInputError("cannot be removed", field=field)
    customer = await db.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    customer.sqlmodel_update(changes)
    await db.flush()
    return customer


@typed_errors
async def delete(db: AsyncSession, customer_id: uuid.UUID) -> bool:
    """Delete the customer; return whether it existed."""
    result = await db.exec(
        sql_delete(Customer)
        .where(col(Customer.id) == customer_id)
        .returning(col(Customer.id))
        .execution_options(synchronize_session="evaluate")
    )
    return result.first() is not None


@typed_errors
async def list(
    db: AsyncSession,
    *,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
) -> Page[Customer]:
    """Return a page of customers ordered by (created_at, id).

    ``search`` matches a part of the name or email in any letter case, served by trigram
    indexes. A ``limit`` outside 1..``MAX_PAGE_SIZE`` raises ``InvalidInputError``.
    """
    query = list_query(limit=limit, cursor=cursor, search=search)
    found = await fastpath.fetch(db, query.sql, *query.args, read_only=True)
    rows = fastpath.load_many(db, Customer, found)
    if len(rows) <= limit:
        return Page[Customer].model_construct(items=rows, next_cursor=None)
    last = rows[limit - 1]
    cursor_out = encode_cursor(last.created_at, last.id)
    return Page[Customer].model_construct(items=rows[:limit], next_cursor=cursor_out)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The statement that ``list`` sends for its arguments, and those arguments."""

    sql: str
    args: tuple[object, ...]


def list_query(
    *, limit: int = 50, cursor: str | None = None, search: str | None = None
) -> ListQuery:
    """Return the statement ``list`` sends for these arguments; refuse them as ``list`` does."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    args: builtins.list[object] = [limit + 1]
    conditions = []
    if cursor is not None:
        args.extend(decode_cursor(cursor))
        conditions.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
    if search:
        args.append(f"%{_escape_like(_search_term(search))}%")
        n = len(args)
        conditions.append(f"(name ILIKE ${n} ESCAPE '\\' OR email ILIKE ${n} ESCAPE '\\')")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return ListQuery(f"{_SELECT} {where} ORDER BY created_at, id LIMIT $1", tuple(args))


def _search_term(search: str) -> str:
    if len(search) > MAX_SEARCH_LENGTH:
        raise InvalidInputError(f"at most {MAX_SEARCH_LENGTH} characters", field="search")
    try:
        return postgres_text(search)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="search") from None


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
