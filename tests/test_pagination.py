"""Keyset pages never skip or repeat a row, whatever the data, page size and interleaved writes."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import create_engine, create_sessionmaker, customers, fastpath, transaction, users
from app_db.engine import dispose
from app_db.errors import InvalidInputError
from app_db.models import Customer, CustomerCreate
from tests.conftest import settings as settings_for

BASE = datetime(2026, 1, 1, tzinfo=UTC)


async def walk_ids(db: AsyncSession, limit: int, search: str | None = None) -> list[object]:
    seen: list[object] = []
    cursor = None
    while True:
        page = await customers.list(db, limit=limit, cursor=cursor, search=search)
        seen.extend(c.id for c in page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=5), max_size=40),
    limit=st.integers(min_value=1, max_value=12),
)
async def test_pages_never_skip_or_repeat(
    db_session: AsyncSession, offsets: list[int], limit: int
) -> None:
    savepoint = await db_session.begin_nested()
    try:
        rows = [
            Customer.model_validate(
                CustomerCreate(name=f"p{i}"), update={"created_at": BASE + timedelta(seconds=s)}
            )
            for i, s in enumerate(offsets)
        ]
        db_session.add_all(rows)
        await db_session.flush()
        expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id))]

        assert await walk_ids(db_session, limit) == expected
    finally:
        await savepoint.rollback()


SEARCH_ALPHABET = "aAb%_\\ "
WORDS = ["", "", "a", "Ab", "b%a", "_\\", "a b", "aba", "bAb a"]
TERMS = ["a", "ab", "ba", "%", "_", "\\", "aba", "a b", "b a", "Ab%"]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(WORDS) | st.text(SEARCH_ALPHABET, max_size=6),
            st.integers(min_value=0, max_value=5),
        ),
        min_size=10,
        max_size=60,
    ),
    term=st.sampled_from(TERMS) | st.text(SEARCH_ALPHABET, min_size=1, max_size=3),
    limit=st.integers(min_value=1, max_value=7),
    plan_cache_mode=st.sampled_from(["force_custom_plan", "force_generic_plan"]),
)
async def test_search_pages_never_skip_or_repeat(
    db_session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    *,
    rows: list[tuple[str, int]],
    term: str,
    limit: int,
    plan_cache_mode: str,
) -> None:
    # Budgets this small take every way of searching: the sample, reading on in order, the
    # trigram indexes, and bounded reads with short pages, for terms without trigrams or
    # common ones.
    monkeypatch.setattr(customers, "SAMPLE_ROWS", 2)
    monkeypatch.setattr(customers, "SCAN_ROWS", 12)
    monkeypatch.setattr(customers, "INDEX_MATCHES", 3)
    savepoint = await db_session.begin_nested()
    try:
        connection = await db_session.connection()
        await connection.execute(text(f"SET LOCAL plan_cache_mode = {plan_cache_mode}"))
        added = [
            Customer.model_validate(
                CustomerCreate(name=f"<{name}>"),
                update={"created_at": BASE + timedelta(seconds=s)},
            )
            for name, s in rows
        ]
        db_session.add_all(added)
        await db_session.flush()
        await connection.execute(text("ANALYZE customers"))
        ordered = sorted(added, key=lambda r: (r.created_at, r.id))
        expected = [r.id for r in ordered if term.lower() in r.name.lower()]

        assert await walk_ids(db_session, limit, term) == expected
    finally:
        await savepoint.rollback()


async def test_pages_stay_stable_while_rows_are_inserted(db_session: AsyncSession) -> None:
    original = [await customers.create(db_session, CustomerCreate(name=f"o{i}")) for i in range(30)]
    seen: list[uuid.UUID] = []
    cursor = None
    inserted = 0
    while True:
        page = await customers.list(db_session, limit=4, cursor=cursor)
        seen.extend(c.id for c in page.items)
        for when in (BASE, datetime.now(UTC) + timedelta(days=1)):
            db_session.add(
                Customer.model_validate(
                    CustomerCreate(name=f"new{inserted}"), update={"created_at": when}
                )
            )
            inserted += 1
        await db_session.flush()
        if page.next_cursor is None or inserted > 200:
            break
        cursor = page.next_cursor

    assert len(seen) == len(set(seen))
    assert {c.id for c in original} <= set(seen)


@pytest.mark.parametrize("table", ["customers", "users"])
async def test_a_page_statement_keeps_one_plan_instead_of_planning_at_every_call(
    own_database: URL, table: str
) -> None:
    lister = customers.list if table == "customers" else users.list
    # A database of its own, and one pooled connection: the statement has no history there.
    one = create_engine(settings_for(own_database, database_pool_size=1, database_max_overflow=0))
    try:
        async with one.begin() as connection:  # tables as large as ones in use
            await connection.exec_driver_sql(
                "INSERT INTO users (email, password_hash)"
                " SELECT 'planned' || i || '@example.com', 'h' FROM generate_series(1, 5000) AS i"
            )
            await connection.exec_driver_sql(
                "INSERT INTO customers (name)"
                " SELECT 'planned' || i FROM generate_series(1, 5000) AS i"
            )
        # Committed: a rolled-back ANALYZE leaves no statistics behind.
        async with one.begin() as connection:
            await connection.exec_driver_sql(f"ANALYZE {table}")
        maker = create_sessionmaker(one)
        async with transaction(maker) as db:
            first = await lister(db, limit=1)
        assert first.next_cursor is not None
        for _ in range(10):  # PostgreSQL weighs a generic plan after five custom ones
            async with transaction(maker) as db:
                await lister(db, limit=1, cursor=first.next_cursor)

        plans = await fastpath.run_borrowed(
            one,
            "SELECT generic_plans FROM pg_prepared_statements WHERE statement LIKE $1",
            (f"% FROM {table} WHERE (created_at, id) > % ORDER BY created_at, id LIMIT %",),
        )
        assert [row["generic_plans"] for row in plans] == [5]
    finally:
        await dispose(one)


@pytest.mark.parametrize("limit", [50.0, "50", None, True])
async def test_a_limit_that_is_not_an_integer_is_refused(
    db_session: AsyncSession, limit: object
) -> None:
    with pytest.raises(InvalidInputError, match="integer"):
        await customers.list(db_session, limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="integer"):
        await users.list(db_session, limit=limit)  # type: ignore[arg-type]


def test_every_page_size_is_served_by_six_statements() -> None:
    statements = {customers.list_query(limit=n).sql for n in range(1, customers.MAX_PAGE_SIZE + 1)}
    assert len(statements) == 6
    assert customers.list_query(limit=50).sql.endswith("LIMIT 51")
    assert customers.list_query(limit=30).sql.endswith("LIMIT 51")  # rounded up
