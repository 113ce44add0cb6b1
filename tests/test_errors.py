"""Typed errors: every constraint maps to one by its name alone; the caller's own errors are
told apart from database failures."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    customers,
    transaction,
)
from app_db.errors import (
    AppDBError,
    ConflictError,
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    error_for_constraint,
)
from app_db.models import CustomerCreate, metadata


def named_constraints() -> list[tuple[str, str, set[str]]]:
    found: list[tuple[str, str, set[str]]] = []
    for table in metadata.sorted_tables:
        columns = set(table.columns.keys())
        kinds = CheckConstraint | ForeignKeyConstraint | UniqueConstraint
        found.extend(
            (str(c.name), table.name, columns) for c in table.constraints if isinstance(c, kinds)
        )
        found.extend((str(i.name), table.name, columns) for i in table.indexes if i.unique)
    return found


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
