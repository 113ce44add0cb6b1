"""A session's transaction begun on the driver: committed, rolled back, or handed to SQLAlchemy.

Every test checks what reached the database (from another connection), and that the held
connection went back to the pool.
"""

import asyncio
import uuid

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DatabaseUnavailableError,
    create_engine,
    create_sessionmaker,
    ownership,
    pool_stats,
    sessions,
    transaction,
)
from app_db.driver_transaction import held
from app_db.engine import dispose
from app_db.errors import DISCONNECTS
from app_db.fastpath import fetch, fetch_in_transaction
from app_db.models import User
from tests.conftest import settings, stored
from tests.factories import make_user

PID = "SELECT pg_backend_pid() AS pid"
CUT: tuple[type[BaseException], ...] = (TimeoutError, *DISCONNECTS)


@pytest.fixture
def maker(notes: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(notes)


async def note(db: AsyncSession, n: int) -> int:
    """Insert ``n`` in the session's transaction; return the backend that ran it."""
    rows = await fetch_in_transaction(db, "INSERT INTO notes VALUES ($1) RETURNING n", n)
    assert rows[0]["n"] == n
    return int((await fetch_in_transaction(db, PID))[0]["pid"])


async def pid_through_sqlalchemy(db: AsyncSession) -> int:
    result = await (await db.connection()).exec_driver_sql(PID)
    return int(result.scalar_one())


async def failing_block(maker: async_sessionmaker[AsyncSession], n: int) -> None:
    async with transaction(maker) as db:
        await note(db, n)
        raise RuntimeError("the block fails")


def returned(engine: AsyncEngine) -> bool:
    return pool_stats(engine).in_use == 0


async def test_a_write_commits_and_rolls_back_without_sqlalchemys_transaction(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        first = await note(db, 1)
        assert await note(db, 2) == first  # one connection, one transaction
        assert held(db) is not None
        assert db.in_transaction()
        assert db.sync_session.get_transaction() is None  # SQLAlchemy began nothing
        assert await stored(notes) == []  # not committed yet
        seen = await fetch(db, "SELECT count(*) AS n FROM notes", read_only=True)
        assert seen[0]["n"] == 2  # the session's reads see its writes: no borrowed connection
    assert returned(notes)
    assert await stored(notes) == [1, 2]

    with pytest.raises(RuntimeError):
        await failing_block(maker, 3)
    assert returned(notes)
    assert await stored(notes) == [1, 2]


async def adopt_and_write(maker: async_sessionmaker[AsyncSession], how: str, *, fail: bool) -> None:
    async with transaction(maker) as db:
        backend = await note(db, 1)
        if how == "execute":
            await db.exec(select(User))
        elif how == "orm flush":
            await make_user(db)
        else:
            await db.connection()
        assert held(db) is None  # SQLAlchemy's now
        connection = await db.connection()
        await connection.exec_driver_sql("INSERT INTO notes VALUES (2)")
        assert await pid_through_sqlalchemy(db) == backend
        assert await note(db, 3) == backend
        if fail:
            raise RuntimeError("the block fails")


@pytest.mark.parametrize("how", ["execute", "orm flush", "connection"])
async def test_sqlalchemy_adopts_the_held_transaction_with_its_work(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession], how: str
) -> None:
    with pytest.raises(RuntimeError):
        await adopt_and_write(maker, how, fail=True)
    assert returned(notes)
    assert await stored(notes) == []
    await adopt_and_write(maker, how, fail=False)
    assert returned(notes)
    assert await stored(notes) == [1, 2, 3]


async def test_an_explicit_commit_commits_the_held_work_and_the_next_begins_anew(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async def commit_then_fail() -> None:
        async with transaction(maker) as db:
            await note(db, 1)
            await db.commit()
            assert returned(notes)
            assert await stored(notes) == [1]
            await note(db, 2)  # a new transaction, held again
            assert held(db) is not None
            raise RuntimeError("the block fails")

    with pytest.raises(RuntimeError):
        await commit_then_fail()
    assert returned(notes)
    assert await stored(notes) == [1]


async def test_an_explicit_rollback_or_close_ends_the_held_transaction(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        await note(db, 1)
        await db.rollback()
        assert held(db) is None
        assert not db.in_transaction()
        assert returned(notes)
        await note(db, 2)
    assert await stored(notes) == [2]

    async with maker() as db:  # a session outside transaction(): closed without a commit
        await note(db, 3)
    assert returned(notes)
    async with maker() as db:
        await note(db, 4)
        await db.commit()
    assert returned(notes)
    assert await stored(notes) == [2, 4]


async def test_begin_sees_the_held_transaction_and_a_savepoint_nests_in_it(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        await note(db, 1)
        with pytest.raises(sa_exc.InvalidRequestError, match="already begun"):
            await db.begin()
        savepoint = await db.begin_nested()
        await note(db, 2)
        await savepoint.rollback()
        await note(db, 3)
    assert returned(notes)
    assert await stored(notes) == [1, 3]


async def test_a_scope_set_after_a_held_write_applies_to_the_rest_of_the_transaction(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    owner = uuid.uuid4()
    async with transaction(maker) as db:
        await note(db, 1)
        await ownership.scope(db, owner)
        rows = await fetch_in_transaction(db, "SELECT current_setting('app_db.owner_id') AS o")
        assert rows[0]["o"] == str(owner)
    assert returned(notes)
    assert await stored(notes) == [1]


async def test_a_lost_connection_loses_the_transaction_and_goes_back_dead(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    backends: list[int] = []

    async def lose_connection() -> None:
        async with transaction(maker) as db:
            backends.append(await note(db, 1))
            async with notes.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backends[0]})
            await asyncio.sleep(0.1)
            await note(db, 2)

    with pytest.raises(DatabaseUnavailableError):
        await lose_connection()
    assert returned(notes)
    async with transaction(maker) as db:
        assert await note(db, 3) != backends[0]
    assert await stored(notes) == [3]


async def test_a_cancelled_statement_drops_the_connection_and_commits_nothing(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async def cut_short() -> None:
        async with asyncio.timeout(0.3), transaction(maker) as db:
            await note(db, 1)
            await fetch_in_transaction(db, "SELECT pg_sleep(30)")

    with pytest.raises(TimeoutError):
        await cut_short()
    assert returned(notes)
    assert await stored(notes) == []


async def test_only_app_dbs_unscoped_sessions_hold_one(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    sqlmodels = async_sessionmaker(notes, class_=AsyncSession, expire_on_commit=False)
    async with transaction(sqlmodels) as db:
        await note(db, 1)
        assert held(db) is None
        assert db.sync_session.get_transaction() is not None
    async with transaction(maker, owner=uuid.uuid4()) as db:
        await note(db, 2)
        assert held(db) is None
    assert returned(notes)
    assert await stored(notes) == [1, 2]


async def test_an_issued_session_is_found_once_its_block_committed(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        user = await make_user(db)
    async with transaction(maker) as db:
        token, issued = await sessions.issue(db, user.id)
        assert held(db) is not None
        same_block = await sessions.validate(db, token)  # its own write: not a borrowed read
        assert same_block is not None
        assert same_block[0].id == issued.id
    assert returned(notes)
    async with transaction(maker) as db:
        found = await sessions.validate(db, token)
    assert found is not None
    assert found[0].id == issued.id


async def test_orm_changes_made_while_one_is_held_are_flushed_in_it(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        user = await make_user(db)
        await db.commit()  # the user stays in the session (expire_on_commit=False)
        await note(db, 1)
        assert held(db) is not None
        user.display_name = "Changed while held"
        assert held(db) is None  # a change begins SQLAlchemy's transaction: it adopted the held one
    assert returned(notes)
    assert await stored(notes) == [1]
    async with notes.connect() as connection:
        result = await connection.execute(
            text("SELECT display_name FROM users WHERE id = :id"), {"id": user.id}
        )
        assert result.scalar_one() == "Changed while held"


async def test_two_tasks_on_one_session_fail_loudly_and_leak_nothing(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        outcomes = await asyncio.gather(note(db, 1), note(db, 2), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], sa_exc.InvalidRequestError)
    assert returned(notes)
    assert len(await stored(notes)) == 1  # the task that held it committed; the other, nothing


@pytest.mark.parametrize("cut", ["lost connection", "timeout"])
async def test_a_caller_who_catches_a_cut_statement_cannot_commit_the_rest(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession], cut: str
) -> None:
    async def carry_on() -> None:
        async with transaction(maker) as db:
            backend = await note(db, 1)
            try:
                if cut == "timeout":
                    async with asyncio.timeout(0.2):
                        await fetch_in_transaction(db, "SELECT pg_sleep(30)")
                else:
                    async with notes.connect() as other:
                        kill = text("SELECT pg_terminate_backend(:pid)")
                        await other.execute(kill, {"pid": backend})
                    await asyncio.sleep(0.1)
                    await note(db, 2)
            except CUT:
                pass  # the caller carries on as if nothing happened
            await note(db, 3)

    with pytest.raises(sa_exc.PendingRollbackError):
        await carry_on()
    assert returned(notes)
    assert await stored(notes) == []


async def test_a_held_connection_goes_back_to_its_own_pool_after_a_dispose(
    own_database: URL,
) -> None:
    engine = create_engine(settings(own_database))
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE notes (n int)")
        async with transaction(create_sessionmaker(engine)) as db:
            await note(db, 1)
            await dispose(engine)  # a new pool: the held connection's own closes it on return
        assert await stored(engine) == [1]
    finally:
        await dispose(engine)


async def test_a_held_commit_closes_the_session_as_sqlalchemys_does(
    notes: AsyncEngine, maker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(maker) as db:
        user = await make_user(db)
        await db.commit()
        await note(db, 1)
        assert held(db) is not None
        assert inspect(user).persistent
    assert inspect(user).detached  # the session closed, as after SQLAlchemy's commit
    assert await stored(notes) == [1]
