"""The sessions of ``create_sessionmaker`` build SQLAlchemy's ``Session`` only when it is needed."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import Customer, create_sessionmaker, customers, sessions, transaction, users
from app_db.lazy_session import LazyAsyncSession, bind_of, built, info_of
from tests.factories import make_user


async def test_a_block_of_borrowed_reads_never_builds_its_session(engine: AsyncEngine) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        user = await make_user(db, f"lazy-{uuid.uuid4().hex}@example.com")
        token, _ = await sessions.issue(db, user.id)
    assert built(db) is not None  # a write needs the session's transaction

    async with transaction(maker) as db:
        found = await users.get_by_email(db, user.email.upper())
        validated = await sessions.validate(db, token)
        page = await customers.list(db, limit=5)
        assert built(db) is None
    assert built(db) is None  # so no BEGIN and no COMMIT were sent, and nothing to close

    assert found is not None
    assert found.id == user.id
    assert validated is not None
    assert validated[1].id == user.id
    assert page.items == [] or all(isinstance(item, Customer) for item in page.items)


def _configuration(session: Session) -> tuple[object, ...]:
    return (
        type(session),
        session.bind,
        session.autoflush,
        session.expire_on_commit,
        session.join_transaction_mode,
        session.twophase,
        dict(session.info),
    )


async def _exec(db: AsyncSession) -> None:
    await db.exec(select(1))
    assert db.in_transaction()


async def _add(db: AsyncSession) -> None:
    db.add(Customer(name="pending"))
    assert db.new


async def _info(db: AsyncSession) -> None:
    db.info["request"] = "added"
    assert db.info["request"] == "added"


async def _bind(db: AsyncSession) -> None:
    assert db.bind is bind_of(db)


async def _in_transaction(db: AsyncSession) -> None:
    assert not db.in_transaction()


@pytest.mark.parametrize("first_use", [_exec, _add, _info, _bind, _in_transaction])
async def test_the_first_use_builds_it_as_asyncsession_would(
    engine: AsyncEngine, first_use: Callable[[AsyncSession], Any]
) -> None:
    maker = create_sessionmaker(engine)
    maker.configure(info={"app": "kept"})
    db = maker()
    eager = AsyncSession(**{**maker.kw, "info": {"app": "kept"}})
    try:
        assert built(db) is None
        assert (bind_of(db), info_of(db)) == (engine, {"app": "kept"})

        await first_use(db)

        assert built(db) is db.sync_session
        made = _configuration(db.sync_session)
        assert made[:-1] == _configuration(eager.sync_session)[:-1]
        assert made[-1] in ({"app": "kept"}, {"app": "kept", "request": "added"})
        assert (bind_of(db), info_of(db)) == (db.bind, db.info)
        with pytest.raises(AttributeError, match="'LazyAsyncSession' object has no attribute"):
            _ = db.no_such_attribute  # type: ignore[attr-defined]
    finally:
        await db.close()
        await eager.close()


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


async def test_sessions_of_other_classes_are_built_already(engine: AsyncEngine) -> None:
    db = AsyncSession(engine)
    try:
        assert built(db) is db.sync_session
        assert (bind_of(db), info_of(db)) == (engine, db.info)
    finally:
        await db.close()
