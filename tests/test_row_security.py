"""PostgreSQL enforces the owner scope: raw SQL in a scoped transaction, as the roles it binds.

A cluster of the test's own: a role that owns the tables (whom ``FORCE ROW LEVEL SECURITY``
binds too) and an application role with row privileges only. Superusers, whom the policy
never binds, only set the rows up.
"""

import uuid
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    InvalidInputError,
    Settings,
    create_engine,
    create_sessionmaker,
    customers,
    driver_transaction,
    ownership,
    sessions,
    transaction,
)
from app_db.engine import dispose
from app_db.testing.embedded import EmbeddedCluster

pytestmark = pytest.mark.slow

A = uuid.UUID("0191a000-0000-7000-8000-00000000000a")
B = uuid.UUID("0191a000-0000-7000-8000-00000000000b")
NO_USER = uuid.UUID("0191a000-0000-7000-8000-00000000000f")
ROLES = (
    "CREATE ROLE app_owner LOGIN",
    "CREATE ROLE app_rw LOGIN",
    "ALTER TABLE users OWNER TO app_owner",
    "ALTER TABLE sessions OWNER TO app_owner",
    "ALTER TABLE throttles OWNER TO app_owner",
    "ALTER TABLE customers OWNER TO app_owner",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_rw",
)
ROWS = (
    (
        "INSERT INTO users (id, email, password_hash)"
        " VALUES (:a, :a_email, 'h'), (:b, :b_email, 'h')",
        {"a": A, "b": B, "a_email": "a@example.com", "b_email": "b@example.com"},
    ),
    (
        "INSERT INTO customers (name, owner_id)"
        " VALUES ('Acme', :a), ('Apex', :a), ('Bolt', :b), ('Nobody', NULL)",
        {"a": A, "b": B},
    ),
)


async def set_up(cluster: EmbeddedCluster) -> None:
    """Make the roles and the rows, as a superuser (emails as parameters: never in a span)."""
    admin = engine_as(cluster.admin_url, "postgres")
    async with admin.begin() as connection:
        for statement in ROLES:
            await connection.execute(text(statement))
        for statement, params in ROWS:
            await connection.execute(text(statement), params)
    await dispose(admin)


def engine_as(url: URL, role: str) -> AsyncEngine:
    target = url.set(drivername="postgresql", username=role)
    secret = SecretStr(target.render_as_string(hide_password=False))
    return create_engine(Settings(_env_file=None, database_url=secret))


async def sql(db: AsyncSession, statement: str, **params: Any) -> Any:
    connection = await db.connection()
    return await connection.execute(text(statement), params)


async def count(db: AsyncSession, where: str = "true", **params: Any) -> int:
    result = await sql(db, f"SELECT count(*) FROM customers WHERE {where}", **params)  # noqa: S608
    return int(result.scalar_one())


@pytest.mark.parametrize("role", ["app_owner", "app_rw"])
async def test_raw_sql_in_a_scope_reaches_only_the_owners_rows(
    cluster: EmbeddedCluster, role: str
) -> None:
    await set_up(cluster)
    engine = engine_as(cluster.admin_url, role)
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker, owner=A) as db:
            assert await count(db) == 2
            assert await count(db, "owner_id = :b OR owner_id IS NULL", b=B) == 0
            assert (await sql(db, "UPDATE customers SET name = name || '!'")).rowcount == 2
            assert (await sql(db, "DELETE FROM customers WHERE owner_id = :b", b=B)).rowcount == 0
            assert sorted(c.name for c in (await customers.list(db)).items) == ["Acme!", "Apex!"]
            assert await customers.bulk_import(db, [{"name": "Bulk 1"}, {"name": "Bulk 2"}]) == 2

        with pytest.raises(DBAPIError, match="row-level security"):
            async with transaction(maker, owner=A) as db:
                await sql(db, "INSERT INTO customers (name, owner_id) VALUES ('x', :b)", b=B)
        with pytest.raises(DBAPIError, match="row-level security"):
            async with transaction(maker, owner=A) as db:
                await sql(db, "UPDATE customers SET owner_id = :b", b=B)

        async with transaction(maker) as db:  # unscoped: every row, as before
            assert await count(db) == 6
            assert await count(db, "owner_id = :a", a=A) == 4
            assert await count(db, "name = 'Bolt' AND owner_id = :b", b=B) == 1
            assert await customers.bulk_import(db, [{"name": "Unscoped"}]) == 1
    finally:
        await dispose(engine)


@pytest.mark.parametrize("role", ["app_owner", "app_rw"])
async def test_a_scope_set_after_a_write_held_on_the_driver_binds_the_rest(
    cluster: EmbeddedCluster, role: str
) -> None:
    """A write in a transaction held on the driver (``app_db.driver_transaction``), then the
    scope: SQLAlchemy's transaction adopts the held one and sets the scope on its connection,
    and PostgreSQL keeps every later statement to the owner's rows."""
    await set_up(cluster)
    engine = engine_as(cluster.admin_url, role)
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker) as db:
            await sessions.issue(db, A)
            assert driver_transaction.held(db) is not None
            await ownership.scope(db, A)
            assert driver_transaction.held(db) is None  # SQLAlchemy's now, scoped
            assert await count(db) == 2
            assert await count(db, "owner_id = :b OR owner_id IS NULL", b=B) == 0
            assert (await sql(db, "UPDATE customers SET name = name || '!'")).rowcount == 2
            assert (await sql(db, "DELETE FROM customers WHERE owner_id = :b", b=B)).rowcount == 0
            assert sorted(c.name for c in (await customers.list(db)).items) == ["Acme!", "Apex!"]

        async def give_away() -> None:
            async with transaction(maker) as db:
                await sessions.issue(db, A)
                await ownership.scope(db, A)
                await sql(db, "UPDATE customers SET owner_id = :b", b=B)

        with pytest.raises(DBAPIError, match="row-level security"):
            await give_away()
        async with transaction(maker) as db:  # unscoped: the first block's session committed
            assert await count(db, "name = 'Bolt' AND owner_id = :b", b=B) == 1
            live = await sql(db, "SELECT count(*) FROM sessions WHERE user_id = :a", a=A)
            assert live.scalar_one() == 1
    finally:
        await dispose(engine)


async def test_copy_from_is_refused_under_the_policy_so_bulk_import_stages(
    cluster: EmbeddedCluster,
) -> None:
    await set_up(cluster)
    dsn = cluster.admin_url.set(drivername="postgresql", username="app_rw")
    raw = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="row-level security"):
            await raw.copy_records_to_table("customers", records=[("x",)], columns=["name"])
    finally:
        await raw.close()


async def test_a_staged_import_moves_batch_by_batch_and_reports_the_first_bad_row(
    cluster: EmbeddedCluster,
) -> None:
    await set_up(cluster)
    engine = engine_as(cluster.admin_url, "app_rw")
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker, owner=A) as db:
            rows = ({"name": f"Staged {i}"} for i in range(11))
            assert await customers.bulk_import(db, rows, chunk_rows=3) == 11
            assert await count(db, "name LIKE 'Staged %' AND owner_id = :a", a=A) == 11

        late = [{"name": f"Late {i}"} for i in range(9)]
        late[7] = {"name": ""}  # validated while the batch before it is moved
        with pytest.raises(InvalidInputError) as bad:
            async with transaction(maker, owner=A) as db:
                await customers.bulk_import(db, late, chunk_rows=3)
        assert (bad.value.position, bad.value.field) == (7, "name")

        late[7], late[4] = {"name": "Late 7"}, {"name": ""}
        with pytest.raises(InvalidInputError) as refused:  # the first batch's refusal wins
            async with transaction(maker, owner=NO_USER) as db:
                await customers.bulk_import(db, late, chunk_rows=3)
        assert (refused.value.position, refused.value.field) == (0, "owner_id")

        async with transaction(maker) as db:
            assert await count(db, "name LIKE 'Late %'") == 0
    finally:
        await dispose(engine)
