"""app_db.customers: CRUD, keyset pagination and search, against the real database."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    InvalidInputError,
    NotFoundError,
    create_engine,
    create_sessionmaker,
    customers,
    transaction,
)
from app_db.models import Customer, CustomerCreate, CustomerUpdate
from app_db.pagination import decode_cursor, encode_cursor
from tests.conftest import settings
from tests.factories import make_user


async def add(db: AsyncSession, name: str, **fields: Any) -> Customer:
    return await customers.create(db, CustomerCreate.model_validate({"name": name, **fields}))


async def walk(db: AsyncSession, *, limit: int, search: str | None = None) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await customers.list(db, limit=limit, cursor=cursor, search=search)
        assert len(page.items) <= limit
        names.extend(c.name for c in page.items)
        if page.next_cursor is None:
            return names
        cursor = page.next_cursor


async def test_create_get_update_delete(db_session: AsyncSession) -> None:
    owner = await make_user(db_session)
    customer = await add(db_session, "Acme", email="Grace@Acme.com", owner_id=owner.id)

    assert await customers.get(db_session, customer.id) is customer
    assert customer.email == "Grace@acme.com"
    assert customer.created_at.tzinfo is not None

    updated = await customers.update(db_session, customer.id, CustomerUpdate(phone="+1 555 0100"))
    assert (updated.name, updated.phone, updated.owner_id) == ("Acme", "+1 555 0100", owner.id)
    cleared = await customers.update(db_session, customer.id, CustomerUpdate(owner_id=None))
    assert cleared.owner_id is None

    assert await customers.delete(db_session, customer.id) is True
    assert await customers.delete(db_session, customer.id) is False
    assert await customers.get(db_session, customer.id) is None


async def test_update_errors(db_session: AsyncSession) -> None:
    customer = await add(db_session, "Acme")

    with pytest.raises(NotFoundError):
        await customers.update(db_session, uuid.uuid4(), CustomerUpdate(name="x"))
    with pytest.raises(InvalidInputError) as caught:
        await customers.update(db_session, customer.id, CustomerUpdate(name=None))
    assert caught.value.field == "name"


async def test_unknown_owner_is_invalid_input(db_session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await add(db_session, "Orphan", owner_id=uuid.uuid4())

    assert caught.value.field == "owner_id"


async def test_pages_follow_the_cursor_in_creation_order(db_session: AsyncSession) -> None:
    names = [f"customer {i:02}" for i in range(23)]
    for name in names:
        await add(db_session, name)

    assert await walk(db_session, limit=5) == names
    assert await walk(db_session, limit=23) == names
    first = await customers.list(db_session, limit=23)
    assert first.next_cursor is None


async def test_search_matches_name_or_email_in_any_case(db_session: AsyncSession) -> None:
    await add(db_session, "Northwind Traders", email="orders@northwind.example")
    await add(db_session, "Contoso", email="hello@NORTHWIND-partner.example")
    await add(db_session, "Fabrikam")
    await add(db_session, "100% Organic_Foods")

    assert await walk(db_session, limit=1, search="NORTHWIND") == ["Northwind Traders", "Contoso"]
    assert await walk(db_session, limit=10, search="100%") == ["100% Organic_Foods"]
    assert await walk(db_session, limit=10, search="North_ind") == []
    assert await walk(db_session, limit=10, search="c_f") == ["100% Organic_Foods"]
    assert await walk(db_session, limit=10, search="") == [
        "Northwind Traders",
        "Contoso",
        "Fabrikam",
        "100% Organic_Foods",
    ]


async def test_search_is_served_by_the_trigram_indexes(db_session: AsyncSession) -> None:
    connection = await db_session.connection()
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    await connection.execute(text("SET LOCAL enable_indexscan = off"))
    plan = await connection.execute(
        text(
            "EXPLAIN SELECT id FROM customers WHERE name ILIKE :p OR email ILIKE :p "
            "ORDER BY created_at, id LIMIT 51"
        ),
        {"p": "%northwind%"},
    )
    lines = "\n".join(plan.scalars())

    assert "ix_customers_name_trgm" in lines
    assert "ix_customers_email_trgm" in lines


@pytest.mark.parametrize("limit", [0, -1, customers.MAX_PAGE_SIZE + 1])
async def test_limit_outside_the_range_is_refused(db_session: AsyncSession, limit: int) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await customers.list(db_session, limit=limit)

    assert caught.value.field == "limit"


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", "!!!!", "AAAA", encode_cursor.__name__, "é", "A" * 10_000],
)
async def test_forged_cursor_is_refused(db_session: AsyncSession, cursor: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await customers.list(db_session, cursor=cursor)

    assert caught.value.field == "cursor"


async def test_bad_search_is_refused(db_session: AsyncSession) -> None:
    with pytest.raises(InvalidInputError):
        await customers.list(db_session, search="nul\x00")
    with pytest.raises(InvalidInputError):
        await customers.list(db_session, search="x" * 201)


def test_cursor_round_trips() -> None:
    customer = Customer.model_validate(CustomerCreate(name="x"))
    created_at = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)

    assert decode_cursor(encode_cursor(created_at, customer.id)) == (created_at, customer.id)


async def update_after_delete(
    maker: async_sessionmaker[AsyncSession], customer_id: uuid.UUID
) -> None:
    async with transaction(maker) as loader:
        loaded = await customers.get(loader, customer_id)  # held: stays in the identity map
        assert loaded is not None
        async with transaction(maker) as deleter:
            assert await customers.delete(deleter, customer_id) is True
        await customers.update(loader, customer_id, CustomerUpdate(name="Saved?"))


async def test_update_of_a_customer_deleted_meanwhile_is_not_found(own_database: URL) -> None:
    """One request loads the customer, another deletes it and commits, then the first updates."""
    engine = create_engine(settings(own_database))
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker) as db:
            customer_id = (await add(db, "Doomed")).id
        with pytest.raises(NotFoundError) as caught:
            await update_after_delete(maker, customer_id)
        assert (caught.value.entity, caught.value.key) == ("customer", customer_id)
    finally:
        await engine.dispose()
