"""The sessions of ``create_sessionmaker`` build SQLAlchemy's ``Session`` only when it is needed."""

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

import app_db.fastapi
from app_db import (
    Customer,
    CustomerCreate,
    PoolTimeoutError,
    commit_position,
    create_sessionmaker,
    customers,
    fastpath,
    sessions,
    transaction,
    users,
)
from app_db.lazy_session import LazyAsyncSession, bind_of, built, info_of
from tests.factories import make_user


async def test_a_block_of_borrowed_reads_never_builds_its_session(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        user = await make_user(db, f"lazy-{uuid.uuid4().hex}@example.com")
        token, _ = await sessions.issue(db, user.id)
        await customers.create(db, CustomerCreate(name="lazy"))
    assert built(db) is not None  # a write needs the session's transaction

    async with transaction(maker, primary=True, after="0") as db:  # no replica: no route
        found = await users.get_by_email(db, user.email.upper())
        validated = await sessions.validate(db, token)
        page = await customers.list(db, limit=5)
        missing = (await users.get(db, uuid.uuid4()), await customers.get(db, uuid.uuid4()))
        rows = await fastpath.fetch(db, "SELECT * FROM customers LIMIT 2", read_only=True)
        loaded = fastpath.load_many(db, Customer, rows)
        assert built(db) is None
    assert built(db) is None  # so no BEGIN and no COMMIT were sent, and nothing to close
    assert await commit_position(db) is None
    assert built(db) is None

    assert found is not None
    assert found.id == user.id
    assert validated is not None
    assert validated[1].id == user.id
    assert [item.name for item in page.items] == ["lazy"]  # the test's own database
    assert missing == (None, None)
    assert [customer.id for customer in loaded] == [row["id"] for row in rows]


async def test_a_request_whose_reads_borrow_builds_no_session(engine: AsyncEngine) -> None:
    app = FastAPI()
    app_db.fastapi.use(app, create_sessionmaker(engine))
    seen: list[AsyncSession] = []

    @app.get("/probe")
    async def probe(db: app_db.fastapi.Db) -> dict[str, bool]:
        seen.append(db)
        await users.get_by_email(db, "nobody@example.com")
        return {"built": built(db) is not None}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://x.example") as client:
        response = await client.get("/probe", headers={"app-db-position": "1a2b"})

    assert response.json() == {"built": False}
    assert built(seen[0]) is None  # after the request's transaction ended too


def _configuration(session: Session) -> tuple[object, ...]:
    return (
        type(session),
        session.bind,
        session.autoflush,
        session.autobegin,
        session.expire_on_commit,
        session.join_transaction_mode,
        session.twophase,
        session._close_state,
        dict(session.execution_options),
    )


async def _exec(db: AsyncSession) -> None:
    await db.exec(select(1))
    assert db.in_transaction()


async def _add(db: AsyncSession) -> None:
    db.add(Customer(name="pending"))
    assert db.new


async def _write_info(db: AsyncSession) -> None:
    db.info["request"] = "added"


async def _bind(db: AsyncSession) -> None:
    assert db.bind is bind_of(db)


async def _in_transaction(db: AsyncSession) -> None:
    assert not db.in_transaction()


@pytest.mark.parametrize("first_use", [_exec, _add, _write_info, _bind, _in_transaction])
async def test_the_first_use_builds_it_as_asyncsession_would(
    engine: AsyncEngine, first_use: Callable[[AsyncSession], Any]
) -> None:
    maker = create_sessionmaker(engine)
    maker.configure(info={"app": "kept"})
    db = maker()
    eager = AsyncSession(**{**maker.kw, "info": {"app": "kept"}})
    try:
        assert built(db) is None
        assert bind_of(db) is engine
        assert info_of(db) == {"app": "kept"}

        await first_use(db)

        assert built(db) is db.sync_session
        assert _configuration(db.sync_session) == _configuration(eager.sync_session)
        assert db.bind is engine
        written = {"request": "added"} if first_use is _write_info else {}
        assert db.info == {"app": "kept", **written}
        assert maker.kw["info"] == {"app": "kept"}  # the session's own copy was written
        assert (bind_of(db), info_of(db)) == (db.bind, db.info)
        with pytest.raises(AttributeError, match="'LazyAsyncSession' object has no attribute"):
            _ = db.no_such_attribute  # type: ignore[attr-defined]
    finally:
        await db.close()
        await eager.close()


def test_the_info_it_answers_unbuilt_is_read_only(engine: AsyncEngine) -> None:
    db = create_sessionmaker(engine)(info={"app": "kept"})
    with pytest.raises(TypeError):
        info_of(db)["written"] = True  # type: ignore[index]
    assert built(db) is None


def test_an_argument_that_session_refuses_raises_at_every_use(engine: AsyncEngine) -> None:
    db = LazyAsyncSession(engine, not_an_option=True)
    for _ in range(2):
        with pytest.raises(TypeError, match="not_an_option"):
            db.in_transaction()
    assert built(db) is None


async def test_a_block_that_raises_before_using_its_session_leaves_with_that_error(
    engine: AsyncEngine,
) -> None:
    class HandlerError(Exception):
        pass

    with pytest.raises(HandlerError):
        async with transaction(create_sessionmaker(engine)) as db:
            raise HandlerError
    assert built(db) is None

    with pytest.raises(PoolTimeoutError) as caught:
        async with transaction(create_sessionmaker(engine)) as db:
            raise sqlalchemy.exc.TimeoutError("QueuePool limit reached")
    assert isinstance(caught.value.__cause__, sqlalchemy.exc.TimeoutError)
    assert built(db) is None


async def test_sessions_of_other_classes_are_built_already(engine: AsyncEngine) -> None:
    db = AsyncSession(engine)
    try:
        assert built(db) is db.sync_session
        assert (bind_of(db), info_of(db)) == (engine, db.info)
    finally:
        await db.close()
