"""Customers: create, read, update, delete, paginated search and bulk import.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import builtins
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Protocol, cast, runtime_checkable

from sqlalchemy import and_, inspect
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm.util import identity_key
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, fastpath, instances, rows
from app_db.bulk import NOT_THE_OWNER, bulk_import
from app_db.errors import InvalidInputError, NotFoundError, row_required
from app_db.models import Customer, CustomerCreate, CustomerUpdate
from app_db.observe.spans import public
from app_db.ownership import owner_of
from app_db.pagination import (
    CURSOR_PATTERN,
    MAX_PAGE_SIZE,
    MAX_SEARCH_LENGTH,
    Page,
    checked_limit,
    decode_cursor,
    encode_cursor,
    escape_like,
    page_of,
    rows_to_read,
    search_term,
)
from app_db.validation import checked_uuid, validated

_NOT_NULL = ("name",)
_NAMES = instances.column_names(Customer)
_COLUMNS = ", ".join(_NAMES)
_KEY_ONLY = ", ".join(name if name in ("created_at", "id") else "NULL" for name in _NAMES)
_SELECT = f"SELECT {_COLUMNS} FROM customers"  # noqa: S608
_BY_ID = coalesce.by_key("customers.id", "customers", _NAMES, "t.id = {}", "uuid")
_OWNED_BY_ID = f"{_SELECT} WHERE id = $1 AND owner_id = $2"

__all__ = [
    "CURSOR_PATTERN",
    "MAX_PAGE_SIZE",
    "MAX_SEARCH_LENGTH",
    "CustomerRow",
    "ListQuery",
    "bulk_import",
    "create",
    "delete",
    "get",
    "list",
    "list_query",
    "update",
]


@runtime_checkable
class CustomerRow(rows.Row, Protocol):
    """A customer in a page from ``list``: read-only, its columns read as attributes or keys.

    It is the driver's row (``app_db.rows``): ``CustomerRead.model_validate(row)`` takes its
    values as they are. To change the customer, ``get`` it and change the instance.
    """

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def owner_id(self) -> uuid.UUID | None: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


_ROW = rows.record_class(Customer, _NAMES)
_SEARCH_ROW = rows.record_class(Customer, (*_NAMES, "hit"))


@public
async def create(db: AsyncSession, data: CustomerCreate) -> Customer:
    """Create a customer; an unknown ``owner_id`` raises ``InvalidInputError``.

    In a session scoped to an owner, the customer gets that owner; an ``owner_id`` naming
    anyone else raises ``InvalidInputError`` (field ``owner_id``).
    """
    checked = validated(CustomerCreate, data)
    owner = owned_by(db, checked.owner_id)
    customer = Customer.model_validate(checked, update={"owner_id": owner})
    db.add(customer)
    await db.flush()
    return customer


def owned_by(
    db: AsyncSession, owner_id: uuid.UUID | None, *, position: int | None = None
) -> uuid.UUID | None:
    """Return the owner a new row of this session gets: the scope's, or ``owner_id`` unscoped.

    Raise ``InvalidInputError`` for a row of a scoped session that names another owner.
    """
    scoped = owner_of(db)
    if scoped is None:
        return owner_id
    if owner_id is not None and owner_id != scoped:
        raise InvalidInputError(NOT_THE_OWNER, field="owner_id", position=position)
    return scoped


@public
async def get(db: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    """Return the customer with this id, or ``None``; it joins the session, as ``db.get``.

    In a scoped session, another owner's customer is ``None``.
    """
    customer_id = checked_uuid(customer_id, field="customer_id")
    owner = owner_of(db)
    if owner is None:
        return await coalesce.get_into(db, Customer, _BY_ID, customer_id)
    held = db.sync_session.identity_map.get(identity_key(Customer, customer_id))
    if held is not None and not inspect(held).expired_attributes:
        return held if held.owner_id == owner else None
    row = await fastpath.fetchrow(db, _OWNED_BY_ID, customer_id, owner)
    return None if row is None else coalesce.loaded_into(db, Customer, row)


@public
async def update(db: AsyncSession, customer_id: uuid.UUID, data: CustomerUpdate) -> Customer:
    """Apply the fields set in ``data``; raise ``NotFoundError`` when there is no such customer.

    A customer that another transaction deleted after this one loaded it is not found either;
    that failed write ends the transaction, so roll it back. In a scoped session, another
    owner's customer is not found, and ``owner_id`` may only name the scope's owner.
    """
    changes = validated(CustomerUpdate, data).model_dump(exclude_unset=True)
    for field in _NOT_NULL:
        if field in changes and changes[field] is None:
            raise InvalidInputError("cannot be removed", field=field)
    scoped = owner_of(db)
    if scoped is not None and "owner_id" in changes and changes["owner_id"] != scoped:
        raise InvalidInputError(NOT_THE_OWNER, field="owner_id")
    customer_id = checked_uuid(customer_id, field="customer_id")
    customer = await db.get(Customer, customer_id)
    if customer is None or (scoped is not None and customer.owner_id != scoped):
        raise NotFoundError("customer", customer_id)
    customer.sqlmodel_update(changes)
    with row_required("customer", customer_id):
        await db.flush()
    return customer


@public
async def delete(db: AsyncSession, customer_id: uuid.UUID) -> bool:
    """Delete the customer; return whether it existed (another owner's does not, in scope)."""
    condition = col(Customer.id) == checked_uuid(customer_id, field="customer_id")
    scoped = owner_of(db)
    if scoped is not None:
        condition = and_(condition, col(Customer.owner_id) == scoped)
    result = await db.exec(
        sql_delete(Customer)
        .where(condition)
        .returning(col(Customer.id))
        .execution_options(synchronize_session="evaluate")
    )
    return result.first() is not None


@public
async def list(
    db: AsyncSession,
    *,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
) -> "Page[CustomerRow]":
    """Return a page of customers ordered by (created_at, id), as read-only rows.

    A row reads each column as an attribute (``CustomerRow``); building it costs nothing over
    the driver's own record, and read schemas take its values without validating them again.
    Pending changes of the session are flushed first, so the page shows them.

    ``search`` matches a part of the name or email in any letter case. A ``limit`` outside
    1..``MAX_PAGE_SIZE`` raises ``InvalidInputError``. A call reads a bounded number of rows
    (see ``list_query``), so a search page may hold fewer than ``limit`` customers, even none,
    and still have a ``next_cursor``: when the term has no trigram (no three letters or digits
    in a row, like ``"qz"``), or is common in the table but rare after the cursor. Page on
    until ``next_cursor`` is ``None``. In a scoped session the page holds only the scope owner's
    customers, read through their own index.
    """
    query = list_query(limit=limit, cursor=cursor, search=search, owner=owner_of(db))
    record = _SEARCH_ROW if query.marks_stop else _ROW
    found = cast(
        "builtins.list[CustomerRow]",
        await fastpath.fetch(db, query.sql, *query.args, read_only=True, record_class=record),
    )
    if not query.marks_stop:
        return page_of(found, limit)
    items = [row for row in found if row["hit"]]
    if len(items) > limit or not found or found[-1]["hit"]:
        return page_of(items, limit)
    stopped_at = found[-1]
    cursor_out = encode_cursor(stopped_at["created_at"], stopped_at["id"])
    return Page.model_construct(items=items, next_cursor=cursor_out)


SAMPLE_ROWS = 1_000
"""Rows after the cursor that a search reads first, in order, before any index."""
SCAN_ROWS = 5_000
"""Most rows after the cursor that a search reads in order."""
INDEX_MATCHES = 10_000
"""Most matches, by the planner's statistics, that a search fetches through the indexes."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The statement that ``list`` sends for its arguments, and those arguments."""

    sql: str
    args: tuple[object, ...]
    marks_stop: bool = False
    """Whether rows say if they match (``hit``), and a last one that does not marks where the
    reading stopped."""


def list_query(
    *,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
    owner: uuid.UUID | None = None,
) -> ListQuery:
    """Return the statement ``list`` sends for these arguments; refuse them as ``list`` does.

    A search reads the ``SAMPLE_ROWS`` rows after the cursor in order, and stops as soon as
    it has a page: that serves common terms. With too few matches there, it reads on in
    order, up to ``SCAN_ROWS`` rows, when the sample's share of matches predicts a page
    within them, or when the planner's statistics count more than ``INDEX_MATCHES`` matches
    in the table. Otherwise, or when reading on falls short for a term the statistics call
    rare, the trigram indexes fetch every match and the page is sorted from them. A common
    term that reading on finds too few of gets a short page whose cursor follows the last row
    read. The statement makes these choices itself, as it runs, so a generic plan of the
    prepared statement serves every term as well as a custom plan would. A term without
    trigrams, which the indexes cannot serve, reads at most ``SCAN_ROWS`` rows in order.
    With ``owner``, every read is limited to that owner's rows (the policy of a scoped
    transaction limits them too; this lets the owner's index serve the page).
    """
    position = decode_cursor(cursor) if cursor is not None else ()
    if not search:
        args, after, mine = _placed((), position, owner)
        return ListQuery(_page_sql(after, mine, rows_to_read(limit)), args)
    term = search_term(search)
    args, after, mine = _placed(
        (checked_limit(limit) + 1, f"%{escape_like(term)}%"), position, owner
    )
    if _has_trigram(term):
        sql = _search_sql(after, mine, SAMPLE_ROWS, SCAN_ROWS, INDEX_MATCHES)
        return ListQuery(sql, args, marks_stop=True)
    return ListQuery(_scan_sql(after, mine, SCAN_ROWS), args, marks_stop=True)


def _placed(
    fixed: tuple[object, ...], position: tuple[object, ...], owner: uuid.UUID | None
) -> tuple[tuple[object, ...], str, str]:
    """Return the arguments after ``fixed`` ones, and the conditions on the position and owner."""
    args = (*fixed, *position) if owner is None else (*fixed, *position, owner)
    after = _AFTER.format(len(fixed) + 1, len(fixed) + 2) if position else ""
    return args, after, "" if owner is None else _OWNER.format(len(args))


_AFTER = "(created_at, id) > (${}, ${})"
_OWNER = "owner_id = ${}"
_ORDER = "ORDER BY created_at, id"
_MATCH = "(name ILIKE $2 OR email ILIKE $2)"  # backslash, LIKE's default escape, escapes $2
_WORDS = re.compile(r"[^\W_]+")


def _has_trigram(term: str) -> bool:
    """Return whether pg_trgm takes a trigram from the pattern ``%term%``.

    pg_trgm reads runs of letters and digits ("words"); a word bounded by another character
    gets two blanks before it or one after it, and a trigram needs three characters in all.
    """
    return any(
        2 * (word.start() > 0) + len(word.group()) + (word.end() < len(term)) >= 3
        for word in _WORDS.finditer(term)
    )


def _where(*conditions: str) -> str:
    present = [c for c in conditions if c]
    return f"WHERE {' AND '.join(present)}" if present else ""


# The statements below are built from constants and column names only.


@cache
def _page_sql(after: str, mine: str, rows: int) -> str:
    # The limit is written in (see rows_to_read), not a parameter: with ``LIMIT $1`` the
    # planner costs a generic plan for a tenth of the table, and plans again at every call.
    return f"{_SELECT} {_where(mine, after)} {_ORDER} LIMIT {rows:d}"


@cache
def _read(after: str, mine: str, rows: int, gate: str = "") -> str:
    """Read the next ``rows`` rows in order until $1 of them match; return the matches.

    Matches have ``hit`` true. When fewer than $1 of the rows match and the reading stopped
    short of the table's end, a row with ``hit`` false follows them: the key of the last row
    read (its other columns are null).
    """
    rows_after = f"FROM customers {_where(mine, after, gate)} {_ORDER}"
    return f"""(
WITH hits AS MATERIALIZED (
    SELECT {_COLUMNS}, true AS hit
    FROM ({_SELECT} {_where(mine, after, gate)} {_ORDER} LIMIT {rows}) AS next_rows
    WHERE {_MATCH} {_ORDER} LIMIT $1
),
last_read AS MATERIALIZED (SELECT created_at, id {rows_after} OFFSET {rows - 1} LIMIT 1)
SELECT * FROM hits
UNION ALL SELECT {_KEY_ONLY}, false FROM last_read
WHERE (SELECT count(*) FROM hits) < $1
)"""  # noqa: S608


@cache
def _scan_sql(after: str, mine: str, rows: int) -> str:
    return f"SELECT * FROM {_read(after, mine, rows)} AS read {_ORDER}, hit DESC"  # noqa: S608


# The share of rows whose name or email matches $2, estimated from the most common values and
# the histogram that ANALYZE keeps for each column, much as the planner estimates a constant
# pattern. Without statistics the share is 0.
_STATISTICS_SHARE = """
SELECT coalesce(sum(
    coalesce((
        SELECT sum(f) FROM unnest(s.most_common_vals::text::text[], s.most_common_freqs)
            AS common(v, f)
        WHERE v ILIKE $2
    ), 0)::float8
    + (1 - s.null_frac - coalesce((SELECT sum(f) FROM unnest(s.most_common_freqs) AS f), 0))
    * coalesce((
        SELECT avg((v ILIKE $2)::int) FROM unnest(s.histogram_bounds::text::text[]) AS v
    ), 0)::float8
), 0)
FROM pg_stats AS s
WHERE s.tablename = 'customers' AND s.attname IN ('name', 'email') AND NOT s.inherited
    AND s.schemaname = (
        SELECT nspname FROM pg_namespace
        WHERE oid = (SELECT relnamespace FROM pg_class WHERE oid = 'customers'::regclass)
    )
"""


@cache
def _search_sql(after: str, mine: str, sample_rows: int, scan_rows: int, index_matches: int) -> str:
    scan_chosen = "(SELECT way FROM route) = 'scan'"
    return f"""
WITH sample AS MATERIALIZED ({_read(after, mine, sample_rows)}),
estimate AS MATERIALIZED (
    SELECT ({_STATISTICS_SHARE}) * greatest(reltuples, 0) > {index_matches} AS common
    FROM pg_class WHERE oid = 'customers'::regclass
),
route AS MATERIALIZED (
    SELECT CASE
        WHEN found >= $1 OR NOT cut THEN 'sample'
        WHEN $1 * {sample_rows} <= found * {scan_rows} THEN 'scan'
        WHEN (SELECT common FROM estimate) THEN 'scan'
        ELSE 'index'
    END AS way
    FROM (
        SELECT count(*) FILTER (WHERE hit) AS found, count(*) FILTER (WHERE NOT hit) > 0 AS cut
        FROM sample
    ) AS counted
),
scan AS MATERIALIZED ({_read(after, mine, scan_rows, gate=scan_chosen)}),
scan_kept AS MATERIALIZED (
    SELECT {scan_chosen} AND (
        (SELECT count(*) FILTER (WHERE hit) FROM scan) >= $1
        OR NOT EXISTS (SELECT FROM scan WHERE NOT hit)
        OR (SELECT common FROM estimate)
    ) AS kept
),
indexed AS MATERIALIZED (
    SELECT {_COLUMNS} FROM customers_matching($2)
    WHERE (SELECT way FROM route) <> 'sample' AND NOT (SELECT kept FROM scan_kept)
)
SELECT * FROM sample WHERE (SELECT way FROM route) = 'sample'
UNION ALL SELECT * FROM scan WHERE (SELECT kept FROM scan_kept)
UNION ALL SELECT {_COLUMNS}, true FROM indexed {_where(mine, after)}
{_ORDER}, hit DESC LIMIT $1"""  # noqa: S608
