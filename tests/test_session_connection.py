"""A session's own connection is taken without SQLAlchemy's greenlet only when that needs no I/O.

The sessions here are of SQLModel's own class, which never hold a transaction on the driver
(``tests/test_driver_transaction.py``): their first statement takes SQLAlchemy's connection.
"""

import uuid

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import AsyncSession as SQLAlchemyAsyncSession
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import create_engine, pool_stats, transaction
from app_db.engine import dispose
from app_db.fastpath import fetch_in_transaction
from app_db.session_connection import quietly
from tests.conftest import settings, stored


def sqlmodel_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def insert_then_fail(maker: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(maker) as db:
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (3)")
        raise RuntimeError("the block fails")


@pytest.fixture
def awaited(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each ``await db.connection()``: the trip through SQLAlchemy's greenlet."""
    calls: list[object] = []
    original = SQLAlchemyAsyncSession.connection

    async def counted(self: SQLAlchemyAsyncSession, *args: object, **kwargs: object) -> object:
        calls.append(self)
        return await original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SQLAlchemyAsyncSession, "connection", counted)
    return calls


async def test_statements_take_the_sessions_connection_as_a_plain_call(
    notes: AsyncEngine, awaited: list[object]
) -> None:
    maker = sqlmodel_sessions(notes)
    async with transaction(maker) as db:
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (1)")
        first = await fetch_in_transaction(db, "SELECT pg_backend_pid() AS pid")
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (2)")
        again = await fetch_in_transaction(db, "SELECT pg_backend_pid() AS pid")
        assert first[0]["pid"] == again[0]["pid"]  # one connection, one transaction
    with pytest.raises(RuntimeError):
        await insert_then_fail(maker)
    assert awaited == []
    assert await stored(notes) == [1, 2]  # the first block committed, the second rolled back
    assert pool_stats(notes).in_use == 0


async def test_a_scoped_session_begins_through_sqlalchemy_with_its_scope(
    notes: AsyncEngine, awaited: list[object]
) -> None:
    owner = uuid.uuid4()
    async with transaction(sqlmodel_sessions(notes), owner=owner) as db:
        assert quietly(db) is None  # its transaction begins by setting the scope: a round trip
        rows = await fetch_in_transaction(db, "SELECT current_setting('app_db.owner_id') AS o")
        assert rows[0]["o"] == str(owner)
        assert len(awaited) == 1
        await fetch_in_transaction(db, "SELECT 1")  # begun: the next one is a plain call
        assert len(awaited) == 1


async def test_a_savepoint_not_yet_sent_is_sent_through_sqlalchemy(
    notes: AsyncEngine, awaited: list[object]
) -> None:
    async with transaction(sqlmodel_sessions(notes)) as db:
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (1)")
        savepoint = await db.begin_nested()
        assert quietly(db) is None
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (2)")
        await savepoint.rollback()
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (3)")
    assert len(awaited) == 1  # the savepoint's statement; before and after it, plain calls
    assert await stored(notes) == [1, 3]


async def test_an_apps_begin_listeners_still_run(notes: AsyncEngine, awaited: list[object]) -> None:
    seen: list[str] = []
    maker = sqlmodel_sessions(notes)

    def engine_begin(*_: object) -> None:
        seen.append("engine begin")

    event.listen(notes.sync_engine, "begin", engine_begin)
    async with transaction(maker) as db:
        assert quietly(db) is None
        event.listen(db.sync_session, "after_begin", lambda *_: seen.append("after_begin"))
        event.remove(notes.sync_engine, "begin", engine_begin)
        assert quietly(db) is None  # the session's own listener alone
        await fetch_in_transaction(db, "INSERT INTO notes VALUES (1)")
    assert seen == ["after_begin"]
    assert len(awaited) == 1
    assert await stored(notes) == [1]


async def test_a_connection_that_is_not_ready_is_renewed_through_sqlalchemy(
    own_database: URL, awaited: list[object]
) -> None:
    engine = create_engine(settings(own_database, database_pool_recycle=1))  # always due
    maker = sqlmodel_sessions(engine)
    try:
        async with transaction(maker) as db:
            first = await fetch_in_transaction(db, "SELECT pg_backend_pid() AS pid")
        async with transaction(maker) as db:
            assert quietly(db) is None  # the pool refused the quiet checkout, took nothing
            assert pool_stats(engine).in_use == 0
            again = await fetch_in_transaction(db, "SELECT pg_backend_pid() AS pid")
        assert len(awaited) == 2
        assert again[0]["pid"] == first[0]["pid"]  # due, not renewed: recycled after 1 s
        assert pool_stats(engine).in_use == 0
    finally:
        await dispose(engine)
