"""Least privilege: a migration role owns the schema; the app role only reads and writes rows."""

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from app_db import (
    Settings,
    create_engine,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
    users,
)
from app_db.cluster.fencing import CONTROL_SQL
from app_db.engine import dispose
from app_db.migrations import upgrade_connection
from app_db.models import CustomerCreate
from app_db.testing.embedded import EmbeddedCluster
from tests.factories import make_user

pytestmark = pytest.mark.slow

GRANTS = (
    "CREATE ROLE app_owner LOGIN",
    "CREATE ROLE app_rw LOGIN",
    "CREATE DATABASE app_least OWNER app_owner",
)
APP_GRANTS = (
    "REVOKE ALL ON DATABASE app_least FROM PUBLIC",
    "GRANT CONNECT, TEMPORARY ON DATABASE app_least TO app_rw",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE ON SCHEMA public TO app_rw",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_rw",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_rw",
)


def settings_as(url: URL, role: str, database: str) -> Settings:
    target = url.set(drivername="postgresql", username=role, database=database)
    return Settings(
        _env_file=None, database_url=SecretStr(target.render_as_string(hide_password=False))
    )


async def run(settings: Settings, *statements: str) -> None:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await dispose(engine)


async def test_app_role_serves_the_api_but_cannot_change_the_schema(
    cluster: EmbeddedCluster,
) -> None:
    admin = cluster.admin_url
    engine = create_engine(settings_as(admin, "postgres", "postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        for statement in GRANTS:
            await connection.execute(text(statement))
    await dispose(engine)

    owner = create_engine(settings_as(admin, "app_owner", "app_least"), pool_size=1)
    async with owner.begin() as connection:
        await connection.run_sync(upgrade_connection)
        for statement in APP_GRANTS:
            await connection.execute(text(statement))
    await dispose(owner)

    app = create_engine(settings_as(admin, "app_rw", "app_least"))
    maker = create_sessionmaker(app)
    try:
        async with transaction(maker) as db:
            user = await make_user(db, "least@example.com")
            token, _ = await sessions.issue(db, user.id)
            await customers.create(db, CustomerCreate(name="Least"))
            await customers.bulk_import(db, [{"name": "Least bulk"}])
        async with app.connect() as connection:  # fencing's questions need no privilege
            control = (await connection.exec_driver_sql(CONTROL_SQL)).mappings().one()
            assert control["system"].isdigit()
            assert not control["standby"]
        async with transaction(maker) as db:
            assert await sessions.validate(db, token) is not None
            assert await users.get_by_email(db, "least@example.com") is not None
            assert len((await customers.list(db, search="Least")).items) == 2
            assert await sessions.revoke(db, token)
        for ddl in (
            "CREATE TABLE intruder (id int)",
            "DROP TABLE customers",
            "ALTER TABLE users ADD COLUMN intruder text",
            "TRUNCATE sessions",
        ):
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                async with app.begin() as connection:
                    await connection.execute(text(ddl))
    finally:
        await dispose(app)


async def test_the_migration_needs_create_on_the_database_or_pg_trgm_there(
    cluster: EmbeddedCluster,
) -> None:
    """What the tutorial says a migrating role needs, and no more."""
    admin = create_engine(
        settings_as(cluster.admin_url, "postgres", "postgres"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as connection:
        for statement in (
            "CREATE ROLE app_schema LOGIN",
            "CREATE ROLE app_database LOGIN",
            "CREATE DATABASE app_schema_only",
            "CREATE DATABASE app_with_create",
            "GRANT CREATE ON DATABASE app_with_create TO app_database",
        ):
            await connection.execute(text(statement))
    await dispose(admin)
    for database, role in (("app_schema_only", "app_schema"), ("app_with_create", "app_database")):
        await run(
            settings_as(cluster.admin_url, "postgres", database),
            f"GRANT CREATE, USAGE ON SCHEMA public TO {role}",
        )

    schema_only = create_engine(settings_as(cluster.admin_url, "app_schema", "app_schema_only"))
    try:
        with pytest.raises(DBAPIError, match='permission denied to create extension "pg_trgm"'):
            async with schema_only.begin() as connection:
                await connection.run_sync(upgrade_connection)
        await run(
            settings_as(cluster.admin_url, "postgres", "app_schema_only"),
            "CREATE EXTENSION pg_trgm",
        )
        async with schema_only.begin() as connection:
            await connection.run_sync(upgrade_connection)
    finally:
        await dispose(schema_only)
    with_create = create_engine(settings_as(cluster.admin_url, "app_database", "app_with_create"))
    try:
        async with with_create.begin() as connection:
            await connection.run_sync(upgrade_connection)
    finally:
        await dispose(with_create)
