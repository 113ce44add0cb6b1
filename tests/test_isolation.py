"""The rolled-back harness: nothing a test writes, even with commit(), reaches the next test."""

import pytest
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.models import Customer, CustomerCreate

MARKER = "isolation-marker"


async def count_markers(db_session: AsyncSession) -> int:
    result = await db_session.exec(
        select(func.count()).select_from(Customer).where(Customer.name == MARKER)
    )
    return result.one()


@pytest.mark.parametrize("attempt", [1, 2])
async def test_committed_row_is_gone_in_the_next_test(
    db_session: AsyncSession, attempt: int
) -> None:
    assert await count_markers(db_session) == 0, f"a row leaked into attempt {attempt}"
    db_session.add(Customer.model_validate(CustomerCreate(name=MARKER)))
    await db_session.commit()
    assert await count_markers(db_session) == 1
