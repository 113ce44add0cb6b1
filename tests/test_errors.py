"""Typed errors: every constraint maps to one by its name alone; the caller's own errors and
rows deleted by concurrent requests are told apart from database failures."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import UUID

import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    create_engine,
    create_sessionmaker,
    customers,
    transaction,
    users,
)
from app_db.errors import (
    AppDBError,
    ConflictError,
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    error_for_constraint,
)
from app_db.models import CustomerCreate, UserUpdate, metadata
from app_db.security import passwords
from tests.conftest import settings
from tests.factories import PASSWORD, make_user


def named_constraints() -> list[tuple[str, str, set[str]]]:
    found: list[tuple[str, str, set[str]]] = []
    for table in metadata.sorted_tables:
        columns = set(table.columns.keys())
        kinds = CheckConstraint | ForeignKeyConstraint | UniqueConstraint
        found.extend(
            (str(c.name), table.name, columns) for c in table.constraints if isinstance(c, kinds)
        )
        found.extend((str(i.name), table.name, columns) for i in table.indexes if i.unique)
    return sorted(found, key=lambda constraint: constraint[0])  # sets: an order of their own


@pytest.mark.parametrize(("name", "table", "columns"), named_constraints())
def test_each_constraint_has_a_typed_error(name: str, table: str, columns: set[str]) -> None:
    error = error_for_constraint(name)

    assert isinstance(error, InvalidInputError | ConflictError | NotFoundError), name
    if isinstance(error, InvalidInputError):
        assert error.field in columns, f"{name} names no column of {table}"


def test_specific_mappings() -> None:
    assert isinstance(error_for_constraint("uq_users_email_lower"), DuplicateEmailError)
    assert isinstance(error_for_constraint("fk_sessions_user_id_users"), NotFoundError)
    assert error_for_constraint("some_other_constraint") is None
    assert error_for_constraint(None) is None


def test_invalid_input_error_says_where() -> None:
    error = InvalidInputError("not a valid email", field="email", position=3)

    assert str(error) == "row 3, field 'email': not a valid email"
    assert (error.field, error.position) == ("email", 3)


async def deadline() -> None:
    async with asyncio.timeout(0):
        await asyncio.sleep(1)


async def missing_file() -> None:
    await asyncio.to_thread(Path("/nonexistent/app_db/rows.csv").read_text)


async def refused() -> None:
    """What an HTTP client meets when its service is down: a refused TCP connection."""
    await asyncio.open_connection("127.0.0.1", 1)


async def disk_error() -> None:
    raise OSError(5, "Input/output error")


CALLER_FAULTS = [deadline, missing_file, refused, disk_error]
"""The caller's own failures, of the builtin types a lost database connection also raises."""


async def fail_in_transaction(
    maker: async_sessionmaker[AsyncSession], fault: Callable[[], Awaitable[None]]
) -> tuple[OSError, BaseException]:
    """Run ``fault`` in a transaction after some work; return what it raised and what left."""
    raised: list[OSError] = []
    try:
        async with transaction(maker) as db:
            await customers.create(db, CustomerCreate(name="before the caller's fault"))
            try:
                await fault()
            except OSError as exc:
                raised.append(exc)
                raise
    except BaseException as exc:
        return raised[0], exc
    raise AssertionError("the fault did not leave the transaction")


@pytest.mark.parametrize("fault", CALLER_FAULTS, ids=lambda fault: fault.__name__)
async def test_caller_errors_leave_a_transaction_as_themselves(
    db_sessionmaker: async_sessionmaker[AsyncSession], fault: Callable[[], Awaitable[None]]
) -> None:
    raised, left = await fail_in_transaction(db_sessionmaker, fault)

    assert left is raised
    assert not isinstance(left, AppDBError)


@pytest_asyncio.fixture(loop_scope="session")
async def committing(own_database: URL) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on a database of the test's own, for races between committed requests."""
    engine = create_engine(settings(own_database))
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def delete_row(maker: async_sessionmaker[AsyncSession], table: str, row_id: UUID) -> None:
    """Delete a row in a transaction of its own, and commit: another request's delete."""
    async with transaction(maker) as db:
        connection = await db.connection()
        deleted = await connection.execute(
            text(f"DELETE FROM {table} WHERE id = :id"),  # noqa: S608 - the tests' own names
            {"id": row_id},
        )
        assert deleted.rowcount == 1


async def seeded_user(maker: async_sessionmaker[AsyncSession]) -> UUID:
    async with transaction(maker) as db:
        return (await make_user(db)).id


USER_CHANGES: dict[str, Callable[[AsyncSession, UUID], Awaitable[object]]] = {
    "update": lambda db, user_id: users.update(db, user_id, UserUpdate(display_name="Still?")),
    "set_password": lambda db, user_id: users.set_password(db, user_id, "a brand new password"),
    "deactivate": users.deactivate,
}


@pytest.mark.parametrize("change", USER_CHANGES)
async def test_change_to_a_user_deleted_meanwhile_is_not_found(
    committing: async_sessionmaker[AsyncSession], change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request loads the user, another deletes it and commits, then the first changes it."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    user_id = await seeded_user(committing)

    async def change_after_delete() -> None:
        async with transaction(committing) as db:
            loaded = await users.get(db, user_id)  # held: stays in the identity map
            assert loaded is not None
            await delete_row(committing, "users", user_id)
            await USER_CHANGES[change](db, user_id)

    with pytest.raises(NotFoundError) as caught:
        await change_after_delete()
    assert (caught.value.entity, caught.value.key) == ("user", user_id)


async def test_user_update_after_a_delete_leaves_the_transaction_usable(
    committing: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await seeded_user(committing)
    async with transaction(committing) as db:
        loaded = await users.get(db, user_id)
        assert loaded is not None
        await delete_row(committing, "users", user_id)
        with pytest.raises(NotFoundError):
            await users.update(db, user_id, UserUpdate(display_name="Still?"))
        created = await customers.create(db, CustomerCreate(name="After the failed update"))
    async with transaction(committing) as db:
        assert await customers.get(db, created.id) is not None


async def test_login_of_a_user_deleted_during_the_rehash_fails_cleanly(
    committing: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored hash is outdated, so login rehashes; the user is deleted meanwhile."""
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    async with transaction(committing) as db:
        user = await make_user(db)
        user.password_hash = weak.hash(PASSWORD)
    rehash = passwords.hash_password

    async def rehash_while_deleted(password: str) -> str:
        await delete_row(committing, "users", user.id)
        return await rehash(password)

    monkeypatch.setattr(users, "hash_password", rehash_while_deleted)
    async with transaction(committing) as db:
        assert await users.authenticate(db, user.email, PASSWORD) is None
        assert await users.get(db, user.id) is None  # the transaction is still usable


async def test_commit_of_a_change_to_a_row_deleted_meanwhile_is_not_found(
    committing: async_sessionmaker[AsyncSession],
) -> None:
    """The caller changes a loaded customer itself; the commit finds the row gone."""
    async with transaction(committing) as db:
        customer_id = (await customers.create(db, CustomerCreate(name="Doomed"))).id

    async def rename_after_delete() -> None:
        async with transaction(committing) as db:
            customer = await customers.get(db, customer_id)
            assert customer is not None
            await delete_row(committing, "customers", customer_id)
            customer.name = "Renamed"

    with pytest.raises(NotFoundError):
        await rename_after_delete()
