"""The driver fast path and its SQLAlchemy fallback give the same, session-attached results."""

import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm.exc import UnmappedInstanceError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    create_engine,
    create_sessionmaker,
    customers,
    fastpath,
    instances,
    rows,
    sessions,
    users,
)
from app_db.fastpath import DRIVER_READS, _holds_connection
from app_db.models import Customer, CustomerCreate, CustomerRead, UserRead
from app_db.models.base import StoredRead
from app_db.testing import settings_for
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


@pytest.mark.usefixtures("driver_reads")
async def test_a_page_holds_read_only_rows_and_a_change_goes_through_get(
    db_session: AsyncSession,
) -> None:
    await customers.create(db_session, CustomerCreate(name="Listed", email="a@example.com"))
    db_session.expunge_all()

    row = (await customers.list(db_session)).items[0]
    assert (row.name, row.email, row["name"]) == ("Listed", "a@example.com", "Listed")
    assert "Listed" in repr(row)
    with pytest.raises(AttributeError):
        row.name = "Changed"  # type: ignore[misc]
    with pytest.raises(UnmappedInstanceError):
        db_session.add(row)
    customer = await customers.get(db_session, row.id)
    assert customer is not None
    customer.name = "Changed"
    await db_session.flush()

    assert [c.name for c in (await customers.list(db_session)).items] == ["Changed"]


@pytest.mark.usefixtures("driver_reads")
async def test_read_schemas_take_a_page_row_as_stored(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await customers.create(db_session, CustomerCreate(name="Stored", email="s@example.com"))
    row = (await customers.list(db_session)).items[0]
    expected = CustomerRead.__pydantic_validator__.validate_python(row, from_attributes=True)

    monkeypatch.setattr(CustomerRead, "__pydantic_validator__", _Refused())
    built = CustomerRead.model_validate(row)  # a row of the table: taken as stored

    assert built.model_dump_json() == expected.model_dump_json()
    assert built.model_fields_set == expected.model_fields_set
    with pytest.raises(_ValidatedError):  # the same values in any other object: validated
        CustomerRead.model_validate(SimpleNamespace(**dict(row.items())))


class _ValidatedError(Exception):
    pass


class _Refused:
    def validate_python(self, *_: object, **__: object) -> object:
        raise _ValidatedError


def test_a_record_class_reads_its_columns_and_refuses_names_that_cannot_be_attributes() -> None:
    names = instances.column_names(Customer)
    record = rows.record_class(Customer, names)
    assert record is rows.record_class(Customer, names)
    assert rows.stored_model(record) is None  # the class, not a row of it
    assert set(names) <= set(vars(record)) & set(vars(rows.mapped_class(record)))
    for name in ("keys", "_private", "count", "of"):  # a record's, private, a tuple's, the twin's
        with pytest.raises(ValueError, match=name):
            rows.record_class(Customer, (*names, name))


@pytest.mark.usefixtures("driver_reads")
async def test_a_page_row_reads_as_a_record_and_dumps_as_its_columns(
    db_session: AsyncSession,
) -> None:
    await customers.create(db_session, CustomerCreate(name="Dumped", phone="+1 555 0100"))
    page = await customers.list(db_session)
    row: Any = page.items[0]  # read as asyncpg's records read

    assert "name" in row
    assert "nothing" not in row
    assert len(row) == len(instances.column_names(Customer))
    assert list(row) == list(row.values())
    assert row.get("phone") == row["phone"] == row.phone == "+1 555 0100"
    assert row.get("nothing", 7) == 7
    assert row == tuple(row.values())  # compares as a tuple of its values, as a record does
    assert isinstance(row, customers.CustomerRow)
    dumped = json.loads(page.model_dump_json())
    assert dumped["items"] == [json.loads(CustomerRead.model_validate(row).model_dump_json())]
    searched = await customers.list(db_session, search="Dumped")  # its rows also read "hit"
    assert searched.items[0]["hit"] is True
    assert json.loads(searched.model_dump_json())["items"] == dumped["items"]


@pytest.mark.usefixtures("driver_reads")
async def test_a_record_class_built_elsewhere_reads_on_either_path(
    db_session: AsyncSession,
) -> None:
    class Plain(asyncpg.Record):
        __slots__ = ()

    found = await fastpath.fetch(db_session, "SELECT 1 AS one", record_class=Plain)

    assert found[0]["one"] == 1
    assert rows.stored_model(found[0]) is None


def test_an_unmapped_object_like_a_loaded_row_is_validated() -> None:
    class Unmapped:
        def __init__(self) -> None:
            self.__dict__.update(
                {instances.LAZY_STATE: True, "id": uuid.uuid4(), "name": 7, "email": None}
            )

    with pytest.raises(ValidationError, match="name"):
        CustomerRead.model_validate(Unmapped())


async def test_a_users_page_holds_no_password_hash(db_session: AsyncSession) -> None:
    await make_user(db_session, "listed@example.com")
    page = await users.list(db_session)

    assert "password_hash" not in list(page.items[0].keys())
    assert "argon2" not in repr(page.items) + page.model_dump_json()


async def test_a_row_is_taken_as_stored_only_by_a_schema_of_its_table_columns(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Hit(StoredRead):  # "hit" is read by a search, not a column of the table
        name: str
        hit: bool

    await customers.create(db_session, CustomerCreate(name="Searched"))
    row = (await customers.list(db_session, search="Searched")).items[0]
    monkeypatch.setattr(Hit, "__pydantic_validator__", _Refused())
    monkeypatch.setattr(UserRead, "__pydantic_validator__", _Refused())

    with pytest.raises(_ValidatedError):
        Hit.model_validate(row)
    with pytest.raises(_ValidatedError):
        UserRead.model_validate(row)


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


async def test_engine_bound_session_reads_without_starting_its_transaction(
    app_db_engine: AsyncEngine,
) -> None:
    """A first read borrows a pooled connection; after a write, reads see it on the session's."""
    async with create_sessionmaker(app_db_engine)() as db, db.begin():
        name = f"borrowed-{uuid.uuid4().hex[:8]}"
        assert (await customers.list(db, search=name)).items == []
        assert not _holds_connection(db)

        customer = await customers.create(db, CustomerCreate(name=name))
        assert _holds_connection(db)
        page = await customers.list(db, search=name)
        assert [c.id for c in page.items] == [customer.id]

        db.add(Customer.model_validate(CustomerCreate(name=f"{name}-pending")))
        assert len((await customers.list(db, search=name)).items) == 2
        await db.rollback()


async def test_a_first_read_at_another_isolation_level_runs_in_the_transaction(
    app_db_engine: AsyncEngine,
) -> None:
    """Such a read cannot borrow: it goes to the driver on the session's connection, after the
    ``BEGIN`` that SQLAlchemy's adapter would send lazily (it once ran before it, on its own)."""
    engine = app_db_engine.execution_options(isolation_level="REPEATABLE READ")
    async with create_sessionmaker(engine)() as db:
        rows = await fastpath.fetch(db, "SELECT current_setting('transaction_isolation') AS level")
        assert rows[0]["level"] == "repeatable read"
        xact = "SELECT pg_current_xact_id()::text AS x"  # one transaction: one id
        first = (await fastpath.fetch(db, xact))[0]["x"]
        assert (await fastpath.fetch(db, xact))[0]["x"] == first
        await db.rollback()


async def test_pending_objects_make_a_fresh_session_use_its_own_connection(
    app_db_engine: AsyncEngine,
) -> None:
    async with create_sessionmaker(app_db_engine)() as db:
        name = f"pending-{uuid.uuid4().hex[:8]}"
        db.add(Customer.model_validate(CustomerCreate(name=name)))

        page = await customers.list(db, search=name)

        assert [c.name for c in page.items] == [name]
        assert _holds_connection(db)
        await db.rollback()


async def test_a_fresh_session_validates_without_a_sqlalchemy_connection(
    own_database: URL,
) -> None:
    """The fast path is really taken: one pool checkout, and no ``Connection`` object at all."""
    engine = create_engine(settings_for(own_database))
    maker = create_sessionmaker(engine)
    async with maker() as db:
        user = await make_user(db)
        token, _ = await sessions.issue(db, user.id)
        await db.commit()
    connections: list[object] = []
    checkouts: list[object] = []

    def on_connect(connection: object) -> None:
        connections.append(connection)

    def on_checkout(*args: object) -> None:
        checkouts.append(args[0])

    event.listen(engine.sync_engine, "engine_connect", on_connect)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    try:
        async with maker() as db:
            found = await sessions.validate(db, token)
            assert not _holds_connection(db)
    finally:
        await engine.dispose()
    assert found is not None
    assert connections == []
    assert len(checkouts) == 1


@pytest.mark.parametrize(
    "select",
    [
        "SELECT {columns} FROM customers",  # exactly the model's columns, in order
        "SELECT {reversed} FROM customers",  # the same columns in another order
        "SELECT 7 AS n, {columns}, 'x' AS hit FROM customers",  # and more than them
    ],
    ids=["columns", "reordered", "more"],
)
async def test_rows_of_any_column_order_load_the_same_instances(
    db_session: AsyncSession, select: str
) -> None:
    created = await customers.create(db_session, CustomerCreate(name="Ordered", phone="+1 555"))
    db_session.expunge_all()
    names = instances.column_names(Customer)
    sql = select.format(columns=", ".join(names), reversed=", ".join(reversed(names)))

    rows = await fastpath.fetch(db_session, sql)
    loaded = fastpath.load_many(db_session, Customer, rows)

    assert [c.model_dump() for c in loaded] == [created.model_dump()]
    assert set(loaded[0].__dict__) == {*names, instances.LAZY_STATE}  # nothing more


async def test_pending_changes_are_what_new_dirty_and_deleted_show(
    db_session: AsyncSession,
) -> None:
    def both() -> tuple[bool, bool]:
        shown = bool(db_session.new or db_session.dirty or db_session.deleted)
        return fastpath.has_pending(db_session), shown

    assert both() == (False, False)
    customer = Customer(name="Pending")
    db_session.add(customer)
    assert both() == (True, True)  # new
    await db_session.flush()
    assert both() == (False, False)
    customer.name = "Changed"
    assert both() == (True, True)  # dirty
    await db_session.flush()
    await db_session.delete(customer)
    assert both() == (True, True)  # deleted
    await db_session.flush()
    assert both() == (False, False)
