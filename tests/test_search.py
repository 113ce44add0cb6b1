"""customers.list with a search term: few rows read under any plan, and exactly the matches."""

import itertools
import json
from collections.abc import Iterable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import customers
from app_db.models import CustomerCreate
from app_db.pagination import Page

PLAN_CACHE_MODES = ("force_custom_plan", "force_generic_plan")
SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Function Scan"}
_statements = itertools.count()


async def driver(db: AsyncSession) -> asyncpg.Connection:
    connection = await db.connection()
    driver_connection = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver_connection, asyncpg.Connection)
    return driver_connection


def literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(
    db: AsyncSession, query: customers.ListQuery, plan_cache_mode: str
) -> tuple[dict[str, Any], int]:
    """Run ``query`` as a prepared statement under ``plan_cache_mode``.

    Return its plan, and how many table rows it read (its function's reads included, which
    the plan does not show).
    """
    raw = await driver(db)
    name = f"search_{next(_statements)}"
    await raw.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
    await raw.execute(f"PREPARE {name} AS {query.sql}")
    values = ", ".join(literal(value) for value in query.args)
    before = await table_rows_read(raw)
    result = await raw.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}({values})")
    read = await table_rows_read(raw) - before
    await raw.execute(f"DEALLOCATE {name}")
    document = result if isinstance(result, list) else json.loads(result)
    plan: dict[str, Any] = document[0]["Plan"]
    return plan, read


async def table_rows_read(raw: asyncpg.Connection) -> int:
    """Rows of customers read so far in this transaction, by sequential and index scans."""
    read: int = await raw.fetchval(
        "SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables"
        " WHERE relid = 'customers'::regclass"
    )
    return read


def parts_run(plan: dict[str, Any]) -> set[str]:
    """The statement's outermost CTEs in which a scan ran."""
    run: set[str] = set()

    def visit(node: dict[str, Any], part: str) -> None:
        name = node.get("Subplan Name", "")
        if name.startswith("CTE ") and not part:
            part = name.removeprefix("CTE ")
        if node["Node Type"] in SCANS and node["Actual Loops"] > 0:
            run.add(part)
        for child in node.get("Plans", []):
            visit(child, part)

    visit(plan, "")
    return run


async def insert(db: AsyncSession, names: Iterable[str]) -> None:
    """Insert customers in this order, which is their (created_at, id) order."""
    await customers.bulk_import(db, ({"name": name} for name in names))
    await (await driver(db)).execute("ANALYZE customers")


async def walk(
    db: AsyncSession, *, limit: int, search: str
) -> tuple[list[str], list[Page[customers.CustomerRow]]]:
    names: list[str] = []
    pages = []
    cursor = None
    while True:
        page = await customers.list(db, limit=limit, cursor=cursor, search=search)
        assert len(page.items) <= limit
        names.extend(c.name for c in page.items)
        pages.append(page)
        if page.next_cursor is None:
            return names, pages
        cursor = page.next_cursor


@pytest.mark.parametrize("plan_cache_mode", PLAN_CACHE_MODES)
@pytest.mark.parametrize("limit", [1, 5])
async def test_a_rare_match_at_the_end_reads_few_rows(
    db_session: AsyncSession, plan_cache_mode: str, limit: int
) -> None:
    table_rows = 10_001
    await insert(db_session, (f"Customer {i}" for i in range(table_rows - 1)))
    last = await customers.create(db_session, CustomerCreate(name="Zanzibar Imports"))

    query = customers.list_query(limit=limit, search="zanzibar")
    _, read = await explain(db_session, query, plan_cache_mode)

    assert read < table_rows // 4
    page = await customers.list(db_session, limit=limit, search="ZANZIBAR")
    assert ([c.id for c in page.items], page.next_cursor) == ([last.id], None)


@pytest.mark.parametrize("plan_cache_mode", PLAN_CACHE_MODES)
async def test_rare_matches_by_name_or_email_come_in_order_page_by_page(
    db_session: AsyncSession, plan_cache_mode: str
) -> None:
    await insert(db_session, (f"Customer {i}" for i in range(1_500)))
    by_email = await customers.create(
        db_session, CustomerCreate(name="Acme", email="orders@zanzibar.example")
    )
    await insert(db_session, (f"Customer {i}" for i in range(1_500, 3_000)))
    by_name = await customers.create(db_session, CustomerCreate(name="Zanzibar Imports"))
    connection = await db_session.connection()
    await connection.execute(text(f"SET LOCAL plan_cache_mode = {plan_cache_mode}"))

    first = await customers.list(db_session, limit=1, search="ZANZIBAR")
    second = await customers.list(db_session, limit=1, cursor=first.next_cursor, search="zanzibar")

    assert [c.id for c in first.items] == [by_email.id]
    assert ([c.id for c in second.items], second.next_cursor) == ([by_name.id], None)


@pytest.mark.parametrize("plan_cache_mode", PLAN_CACHE_MODES)
async def test_a_common_term_absent_after_the_cursor_does_not_fetch_every_match(
    db_session: AsyncSession, plan_cache_mode: str
) -> None:
    matches = 12_000
    await insert(
        db_session,
        [*(f"Old {i}" for i in range(3_000)), *(f"Customer {i}" for i in range(matches))],
    )

    query = customers.list_query(limit=5, search="customer")
    plan, read = await explain(db_session, query, plan_cache_mode)

    assert "indexed" not in parts_run(plan)
    assert read < matches // 2
    page = await customers.list(db_session, limit=5, search="customer")
    assert [c.name for c in page.items] == [f"Customer {i}" for i in range(5)]


@pytest.mark.parametrize("plan_cache_mode", PLAN_CACHE_MODES)
async def test_a_term_without_trigrams_reads_at_most_scan_rows(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch, plan_cache_mode: str
) -> None:
    monkeypatch.setattr(customers, "SCAN_ROWS", 1_000)
    await insert(db_session, [*(f"Customer {i}" for i in range(5_000)), "QZ Imports"])

    _, read = await explain(db_session, customers.list_query(limit=1, search="qz"), plan_cache_mode)

    # 1,000 rows, then the last one's key through the index, which visits these new rows again
    assert read <= 2 * 1_000


def small_table() -> list[str]:
    """300 names; with 20 sample rows and 100 scan rows each term takes a different way."""
    names = [f"row {i:03}" for i in range(300)]
    for i in range(0, 300, 5):
        names[i] += " mid"  # 4 in the sample: read on in order
    for i in (0, 5, 10, 15, 250, 260, 270):
        names[i] += " burst"  # 4 in the sample, then none for 230 rows: the indexes
    for i in range(150, 300):
        names[i] += " late"  # none in the sample, but common: read on, and a short page
    names[299] += " Zanzibar"  # none in the sample, and rare: the indexes
    return names


@pytest.mark.parametrize(
    ("term", "parts"),
    [
        ("ROW", {"sample"}),
        ("mid", {"sample", "scan"}),
        ("burst", {"sample", "scan", "estimate", "indexed"}),
        ("late", {"sample", "estimate", "scan"}),
        ("zanzibar", {"sample", "estimate", "indexed"}),
    ],
)
@pytest.mark.parametrize("plan_cache_mode", PLAN_CACHE_MODES)
async def test_each_way_of_searching_returns_exactly_the_matches(
    db_session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    term: str,
    parts: set[str],
    plan_cache_mode: str,
) -> None:
    monkeypatch.setattr(customers, "SAMPLE_ROWS", 20)
    monkeypatch.setattr(customers, "SCAN_ROWS", 100)
    monkeypatch.setattr(customers, "INDEX_MATCHES", 30)
    names = small_table()
    await insert(db_session, names)
    expected = [name for name in names if term.lower() in name.lower()]

    plan, _ = await explain(db_session, customers.list_query(limit=5, search=term), plan_cache_mode)

    assert parts_run(plan) == parts
    for limit in (1, 2, 5, 6, 50, 500):
        assert (await walk(db_session, limit=limit, search=term))[0] == expected


@pytest.mark.parametrize("matches", [499, 500, 501])
async def test_a_page_of_500_ends_exactly_where_the_matches_do(
    db_session: AsyncSession, matches: int
) -> None:
    names = [f"n{i} {'hit' if i < matches else 'other'}" for i in range(700)]
    await insert(db_session, names)

    first = await customers.list(db_session, limit=500, search="HIT")

    assert [c.name for c in first.items] == names[: min(matches, 500)]
    assert (first.next_cursor is None) == (matches <= 500)
    if first.next_cursor is not None:
        rest = await customers.list(db_session, limit=500, cursor=first.next_cursor, search="hit")
        assert ([c.name for c in rest.items], rest.next_cursor) == (names[500:matches], None)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("%", ["100% Organic_Foods", "percent%sign"]),
        ("_", ["100% Organic_Foods", "under_score"]),
        ("\\", ["back\\slash co"]),
        ("k\\s", ["back\\slash co"]),
        ("t%s", ["percent%sign"]),
        ("r_s", ["under_score"]),
        ("c_F", ["100% Organic_Foods"]),
        ("c%f", []),
        ("o", ["100% Organic_Foods", "back\\slash co", "under_score"]),
    ],
)
async def test_wildcards_and_backslash_match_only_themselves(
    db_session: AsyncSession, search: str, expected: list[str]
) -> None:
    await insert(
        db_session, ["100% Organic_Foods", "back\\slash co", "under_score", "percent%sign", "p"]
    )

    assert (await walk(db_session, limit=2, search=search))[0] == expected


async def test_a_term_without_trigrams_pages_through_bounded_reads(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customers, "SCAN_ROWS", 10)
    names = [f"row {i}" + (" qz" if i in (3, 4, 31) else "") for i in range(35)]
    await insert(db_session, names)

    found, pages = await walk(db_session, limit=1, search="QZ")

    assert found == ["row 3 qz", "row 4 qz", "row 31 qz"]
    assert [[c.name for c in page.items] for page in pages] == [
        ["row 3 qz"],  # a full page (rows 0 to 4 read): the cursor follows its customer
        ["row 4 qz"],  # rows 4 to 13 read: the cursor follows row 13
        [],  # rows 14 to 23
        ["row 31 qz"],  # rows 24 to 33
        [],  # row 34, the last: no cursor
    ]


async def test_a_match_on_the_last_row_read_ends_its_short_page(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customers, "SCAN_ROWS", 10)
    names = [f"row {i}" + (" qz" if i in (9, 31) else "") for i in range(35)]
    await insert(db_session, names)

    found, pages = await walk(db_session, limit=2, search="qz")

    assert found == ["row 9 qz", "row 31 qz"]
    assert [[c.name for c in page.items] for page in pages][:2] == [["row 9 qz"], []]
