"""Keyset pages never skip or repeat a row, whatever the data, page size and interleaved writes."""

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import customers
from app_db.models import Customer, CustomerCreate

BASE = datetime(2026, 1, 1, tzinfo=UTC)


async def walk_ids(db: AsyncSession, limit: int) -> list[object]:
    seen: list[object] = []
    cursor = None
    while True:
        page = await customers.list(db, limit=limit, cursor=cursor)
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
