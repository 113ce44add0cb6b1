"""customers.bulk_import: COPY in chunks, inside the caller's transaction, all or nothing."""

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import InvalidInputError, bulk, create_sessionmaker, customers
from app_db.models import CustomerCreate
from tests.factories import make_user


async def count(db: AsyncSession, prefix: str) -> int:
    connection = await db.connection()
    result = await connection.scalar(
        text("SELECT count(*) FROM customers WHERE name LIKE :p"), {"p": f"{prefix}%"}
    )
    assert isinstance(result, int)
    return result


def generated(prefix: str, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"name": f"{prefix}{i}", "email": f"c{i}@example.com", "phone": "+1 555 0100"}


async def test_imports_from_a_generator_in_chunks(db_session: AsyncSession) -> None:
    loaded = await customers.bulk_import(db_session, generated("gen-", 2_345), chunk_rows=500)

    assert loaded == 2_345
    assert await count(db_session, "gen-") == 2_345
    page = await customers.list(db_session, limit=3, search="gen-")
    assert [c.name for c in page.items] == ["gen-0", "gen-1", "gen-2"]
    assert page.items[0].email == "c0@example.com"
    assert page.items[0].created_at.tzinfo is not None


async def test_imports_validated_models_from_an_async_iterable(db_session: AsyncSession) -> None:
    async def source() -> AsyncIterator[CustomerCreate]:
        for i in range(10):
            yield CustomerCreate(name=f"async-{i}")

    assert await customers.bulk_import(db_session, source(), chunk_rows=3) == 10
    assert await count(db_session, "async-") == 10


async def test_bad_row_names_position_and_field_and_leaves_nothing(
    db_session: AsyncSession,
) -> None:
    rows = list(generated("bad-", 1_000))
    rows[742] = {"name": "bad-742", "email": "not an email"}

    with pytest.raises(InvalidInputError) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, rows, chunk_rows=100)

    assert (caught.value.position, caught.value.field) == (742, "email")
    assert "row 742" in str(caught.value)
    assert await count(db_session, "bad-") == 0


async def test_database_refusal_during_copy_is_typed(db_session: AsyncSession) -> None:
    rows: list[dict[str, Any]] = [{"name": "fk-0"}, {"name": "fk-1", "owner_id": uuid.uuid4()}]

    with pytest.raises(InvalidInputError) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, rows)

    assert caught.value.field == "owner_id"
    assert await count(db_session, "fk-") == 0


async def test_copy_runs_inside_the_session_transaction(app_db_engine: AsyncEngine) -> None:
    """On a fresh session, a rollback must undo the COPY: it must not have autocommitted."""
    prefix = f"tx-{uuid.uuid4().hex[:8]}-"
    sessionmaker = create_sessionmaker(app_db_engine)
    try:
        async with sessionmaker() as db:
            assert await customers.bulk_import(db, generated(prefix, 50)) == 50
            assert await count(db, prefix) == 50
            await db.rollback()
        async with sessionmaker() as db:
            assert await count(db, prefix) == 0
    finally:
        async with app_db_engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM customers WHERE name LIKE :p"), {"p": f"{prefix}%"}
            )


CALLER_FAULTS: dict[str, Callable[[], OSError]] = {
    "TimeoutError": lambda: TimeoutError("the caller's deadline"),
    "OSError": lambda: OSError(5, "Input/output error"),
    "FileNotFoundError": lambda: FileNotFoundError(2, "No such file or directory", "rows.csv"),
    "ConnectionRefusedError": lambda: ConnectionRefusedError(111, "Connection refused"),
}
"""The caller's own failures, of the builtin types a lost database connection also raises."""


def failing_rows(prefix: str, fault: BaseException, at: int) -> Iterator[dict[str, Any]]:
    yield from generated(prefix, at)
    raise fault


async def failing_async_rows(
    prefix: str, fault: BaseException, at: int
) -> AsyncIterator[dict[str, Any]]:
    for row in generated(prefix, at):
        yield row
    raise fault


@pytest.mark.parametrize("kind", CALLER_FAULTS)
@pytest.mark.parametrize("source", ["iterable", "async iterable"])
async def test_caller_errors_in_the_rows_pass_through(
    db_session: AsyncSession, kind: str, source: str
) -> None:
    fault = CALLER_FAULTS[kind]()
    prefix = f"fault-{uuid.uuid4().hex[:8]}-"
    rows = (failing_rows if source == "iterable" else failing_async_rows)(prefix, fault, 250)

    with pytest.raises(type(fault)) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, rows, chunk_rows=100)

    assert caught.value is fault
    assert await count(db_session, prefix) == 0


def owned(prefix: str, n: int, owners: list[uuid.UUID]) -> list[dict[str, Any]]:
    return [{"name": f"{prefix}{i}", "owner_id": owners[i % len(owners)]} for i in range(n)]


@pytest.mark.parametrize("chunk_rows", [1_000, 3_000, bulk.DEFAULT_CHUNK_ROWS])
async def test_unknown_owner_names_its_row_and_id(
    db_session: AsyncSession, chunk_rows: int
) -> None:
    owners = [(await make_user(db_session)).id for _ in range(3)]
    rows = owned("owner-", 10_000, owners)
    missing = uuid.uuid4()
    rows[7_000]["owner_id"] = rows[7_500]["owner_id"] = missing

    with pytest.raises(InvalidInputError) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, rows, chunk_rows=chunk_rows)

    assert (caught.value.position, caught.value.field) == (7_000, "owner_id")
    assert str(missing) in str(caught.value)
    assert await count(db_session, "owner-") == 0


async def test_unknown_owner_in_an_async_iterable_names_its_row(db_session: AsyncSession) -> None:
    missing = uuid.uuid4()

    async def source() -> AsyncIterator[dict[str, Any]]:
        for i in range(50):
            yield {"name": f"async-owner-{i}", "owner_id": missing if i == 42 else None}

    with pytest.raises(InvalidInputError) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, source(), chunk_rows=20)

    assert (caught.value.position, caught.value.field) == (42, "owner_id")
    assert str(missing) in str(caught.value)


def unchecked(prefix: str, n: int) -> list[CustomerCreate]:
    """Rows built without validation, as a caller does to save its cost: the database checks."""
    return [CustomerCreate.model_construct(name=f"{prefix}{i}") for i in range(n)]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("name", {"name": ""}),
        ("name", {"name": "x" * 201}),
        ("name", {"name": None}),
        ("phone", {"phone": "12"}),
    ],
    ids=["empty name", "long name", "no name", "short phone"],
)
@pytest.mark.parametrize("chunk_rows", [3_000, bulk.DEFAULT_CHUNK_ROWS])
async def test_row_the_database_refuses_names_its_position_and_field(
    db_session: AsyncSession, field: str, bad: dict[str, Any], chunk_rows: int
) -> None:
    rows = unchecked("check-", 10_000)
    rows[7_000] = CustomerCreate.model_construct(**{"name": "check-7000", **bad})

    with pytest.raises(InvalidInputError) as caught:
        async with db_session.begin_nested():
            await customers.bulk_import(db_session, rows, chunk_rows=chunk_rows)

    assert (caught.value.position, caught.value.field) == (7_000, field)
    assert "row 7000" in str(caught.value)
    assert await count(db_session, "check-") == 0


def test_the_docs_state_the_default_chunk_size() -> None:
    page = Path(__file__).parents[1] / "docs" / "reference" / "api.md"

    assert f"chunks of {bulk.DEFAULT_CHUNK_ROWS:,} rows" in page.read_text(encoding="utf-8")
