"""Owner-scoped transactions through the API: one user's customers only, whatever is asked.

These run in the test plugin's harness, as a superuser, whom row-level security lets through:
what they show is the API's own scoping. ``test_row_security.py`` shows PostgreSQL's, with raw
SQL, as roles the policy applies to.
"""

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    AppDBError,
    CustomerCreate,
    CustomerUpdate,
    InvalidInputError,
    NotFoundError,
    create_sessionmaker,
    customers,
    fastpath,
    ownership,
    transaction,
)
from app_db.engine import create_engine, dispose
from app_db.models import User
from tests.conftest import settings
from tests.factories import make_user


async def two_owners(db: AsyncSession) -> tuple[User, User, list[uuid.UUID]]:
    """Users A and B; customers of A (2), of B (1) and of nobody (1): their ids in that order."""
    a, b = await make_user(db), await make_user(db)
    made = [
        await customers.create(db, CustomerCreate(name=name, owner_id=owner))
        for name, owner in (("Acme", a.id), ("Apex", a.id), ("Bolt", b.id), ("Nobody", None))
    ]
    return a, b, [c.id for c in made]


async def test_a_scoped_transaction_sees_and_changes_its_owners_customers_only(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(db_sessionmaker) as db:
        a, b, (acme, _apex, bolt, nobody) = await two_owners(db)

    async with transaction(db_sessionmaker, owner=a.id) as db:
        assert [c.name for c in (await customers.list(db)).items] == ["Acme", "Apex"]
        assert [c.name for c in (await customers.list(db, search="b")).items] == []
        assert await customers.get(db, bolt) is None
        assert await customers.get(db, nobody) is None
        assert (await customers.get(db, acme)) is not None
        with pytest.raises(NotFoundError):
            await customers.update(db, bolt, CustomerUpdate(name="Mine now"))
        assert await customers.delete(db, bolt) is False
        mine = await customers.create(db, CustomerCreate(name="Axle"))
        assert mine.owner_id == a.id
        with pytest.raises(InvalidInputError) as refused:
            await customers.create(db, CustomerCreate(name="Forged", owner_id=b.id))
        assert refused.value.field == "owner_id"
        with pytest.raises(InvalidInputError):
            await customers.update(db, acme, CustomerUpdate(owner_id=b.id))
        assert await customers.bulk_import(db, [{"name": "Bulk A"}, {"name": "Bulk A2"}]) == 2

    async with transaction(db_sessionmaker) as db:  # unscoped: everything, as before
        page = await customers.list(db, limit=100)
        by_owner = {c.name: c.owner_id for c in page.items}
    assert by_owner == {
        "Acme": a.id,
        "Apex": a.id,
        "Bolt": b.id,
        "Nobody": None,
        "Axle": a.id,
        "Bulk A": a.id,
        "Bulk A2": a.id,
    }


async def test_bulk_import_in_a_scope_stores_nothing_for_another_owner(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(db_sessionmaker) as db:
        a, b, _ = await two_owners(db)

    async def import_forged() -> None:
        async with transaction(db_sessionmaker, owner=a.id) as db:
            rows = [{"name": "Fine"}, {"name": "Forged", "owner_id": str(b.id)}]
            await customers.bulk_import(db, rows)

    with pytest.raises(InvalidInputError) as refused:
        await import_forged()

    assert (refused.value.position, refused.value.field) == (1, "owner_id")
    async with transaction(db_sessionmaker, owner=b.id) as db:
        assert [c.name for c in (await customers.list(db)).items] == ["Bolt"]


async def test_a_scope_ends_with_its_transaction(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(db_sessionmaker) as db:
        a, _, _ = await two_owners(db)
    async with transaction(db_sessionmaker, owner=a.id) as db:
        await customers.list(db)

    async with transaction(db_sessionmaker) as db:
        connection = await db.connection()
        setting = await connection.scalar(text("SELECT app_db_owner()"))
        assert setting is None
        assert len((await customers.list(db)).items) == 4


async def test_a_session_keeps_one_scope(db_session: AsyncSession) -> None:
    a, b = await make_user(db_session), await make_user(db_session)
    await ownership.scope(db_session, a.id)
    await ownership.scope(db_session, a.id)  # the same again: nothing changes

    with pytest.raises(InvalidInputError):
        await ownership.scope(db_session, b.id)
    with pytest.raises(InvalidInputError):
        await ownership.scope(db_session, "not a uuid")  # type: ignore[arg-type]
    assert ownership.owner_of(db_session) == a.id


async def test_concurrent_lookups_of_several_scopes_each_get_their_own_answer(
    engine: AsyncEngine,
) -> None:
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        a, b, ids = await two_owners(db)
    scopes = {"a": a.id, "b": b.id, "none": None}
    owners = dict(zip(ids, [a.id, a.id, b.id, None], strict=True))

    async def lookup(scope: uuid.UUID | None, customer_id: uuid.UUID) -> bool:
        async with transaction(maker, owner=scope) as db:
            return await customers.get(db, customer_id) is not None

    asked = [(scope, cid) for scope in scopes.values() for cid in ids for _ in range(25)]
    found = await asyncio.gather(*(lookup(scope, cid) for scope, cid in asked))

    for (scope, cid), seen in zip(asked, found, strict=True):
        assert seen == (scope is None or owners[cid] == scope), (scope, cid)


async def test_scoped_reads_borrow_a_connection_in_a_read_only_transaction_of_their_own(
    own_database: URL,
) -> None:
    """On an engine, a scoped session's first reads need no transaction of the session's."""
    engine = create_engine(settings(own_database), pool_size=1, max_overflow=0)
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker) as db:
            a, b, _ = await two_owners(db)

        async def names(owner: uuid.UUID | None) -> list[str]:
            async with transaction(maker, owner=owner) as db:
                page = await customers.list(db)
                assert db.sync_session.get_transaction() is None  # borrowed: none began
            return sorted(c.name for c in page.items)

        asked = [a.id, b.id, None] * 20
        found = await asyncio.gather(*(names(owner) for owner in asked))
        expected = {
            a.id: ["Acme", "Apex"],
            b.id: ["Bolt"],
            None: ["Acme", "Apex", "Bolt", "Nobody"],
        }
        assert found == [expected[owner] for owner in asked]

        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            async with transaction(maker, owner=a.id) as db:
                await fastpath.fetch(db, "DELETE FROM customers RETURNING id", read_only=True)
        async with engine.connect() as connection:  # the one pooled connection, scope gone
            assert await connection.scalar(text("SELECT app_db_owner()")) is None
            assert await connection.scalar(text("SELECT count(*) FROM customers")) == 4
    finally:
        await dispose(engine)


async def test_a_scoped_read_that_fails_drops_its_connection(own_database: URL) -> None:
    """Never given back in the middle of its transaction, with its owner's scope set."""
    engine = create_engine(settings(own_database), pool_size=1, max_overflow=0)
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker) as db:
            a, _, _ = await two_owners(db)
        async with engine.connect() as connection:
            first = await connection.scalar(text("SELECT pg_backend_pid()"))

        with pytest.raises(AppDBError) as failed:
            async with transaction(maker, owner=a.id) as db:
                await fastpath.fetch(db, "SELECT 1 / 0", read_only=True)
        assert "division by zero" in str(failed.value.__cause__)

        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != first
            assert await connection.scalar(text("SELECT app_db_owner()")) is None
        async with transaction(maker) as db:
            assert len((await customers.list(db)).items) == 4
    finally:
        await dispose(engine)
