"""The driver fast path and its SQLAlchemy fallback give the same, session-attached results."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import create_engine, create_sessionmaker, customers, sessions, users
from app_db.fastpath import DRIVER_READS
from app_db.models import Customer, CustomerCreate
from app_db.testing.plugin import settings_for
from tests.factories import make_user


@pytest_asyncio.fixture(loop_scope="session", params=[True, False], ids=["driver", "sqlalchemy"])
async def driver_reads(
    request: pytest.FixtureRequest, db_connection: AsyncConnection
) -> AsyncIterator[list[str]]:
    """Switch the path, and collect the statements that go through SQLAlchemy's cursor."""
    await db_connection.execution_options(**{DRIVER_READS: request.param})
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(db_connection.sync_connection, "before_cursor_execute", record)
    yield seen
    event.remove(db_connection.sync_connection, "before_cursor_execute", record)
    await db_connection.execution_options(**{DRIVER_READS: True})


async def test_hot_reads_take_the_chosen_path(
    db_session: AsyncSession, driver_reads: list[str], request: pytest.FixtureRequest
) -> None:
    user = await make_user(db_session, "Fast@Example.com")
    token, issued = await sessions.issue(db_session, user.id, ip="192.0.2.1")
    await customers.create(db_session, CustomerCreate(name="Acme"))
    driver_reads.clear()

    found = await sessions.validate(db_session, token)
    by_email = await users.get_by_email(db_session, "fast@example.COM")
    page = await customers.list(db_session, search="acm")

    assert found is not None
    assert found[0] is issued
    assert found[1] is user
    assert issued.ip == "192.0.2.1"
    assert by_email is user
    assert [c.name for c in page.items] == ["Acme"]
    through_sqlalchemy = "sqlalchemy" in request.node.callspec.id
    assert (len(driver_reads) == 3) is through_sqlalchemy


async def test_loaded_rows_join_the_session(db_session: AsyncSession) -> None:
    await customers.create(db_session, CustomerCreate(name="Tracked"))
    db_session.expunge_all()

    page = await customers.list(db_session)
    customer = page.items[0]
    customer.name = "Tracked and changed"
    await db_session.flush()
    db_session.expunge_all()

    again = await customers.get(db_session, customer.id)
    assert again is not None
    assert again.name == "Tracked and changed"


async def test_pending_changes_are_flushed_before_a_read(db_session: AsyncSession) -> None:
    db_session.add(Customer.model_validate(CustomerCreate(name="Pending")))

    page = await customers.list(db_session, search="Pending")

    assert [c.name for c in page.items] == ["Pending"]


async def test_works_with_the_statement_cache_off(app_db_database: URL) -> None:
    settings = settings_for(app_db_database)
    engine = create_engine(
        settings, connect_args={**settings.connect_args(), "statement_cache_size": 0}
    )
    try:
        async with create_sessionmaker(engine)() as db:
            user = await make_user(db, "nocache@example.com")
            token, _ = await sessions.issue(db, user.id)
            for _ in range(3):
                assert await sessions.validate(db, token) is not None
                assert await users.get_by_email(db, "nocache@example.com") is user
                assert (await customers.list(db)).next_cursor is None
            await db.rollback()
    finally:
        await engine.dispose()
