"""Read replicas: DATABASE_READ_URL takes the reads; writes always go to the primary.

A role with ``default_transaction_read_only=on`` stands in for the replica, so any write
routed there by mistake fails loudly.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
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
from app_db.cluster.replica import replica_of
from app_db.engine import dispose, read_engine
from app_db.models import CustomerCreate
from app_db.testing.embedded import EmbeddedCluster
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.slow


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    cluster: EmbeddedCluster,
) -> None:
    primary_url = cluster.admin_url.set(drivername="postgresql")
    setup = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr(primary_url.render_as_string(hide_password=False)),
        )
    )
    async with setup.begin() as connection:
        for statement in (
            "CREATE ROLE replica LOGIN",
            "ALTER ROLE replica SET default_transaction_read_only = on",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO replica",
        ):
            await connection.execute(text(statement))
    await setup.dispose()
    replica_url = primary_url.set(username="replica")
    engine = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr(primary_url.render_as_string(hide_password=False)),
            database_read_url=SecretStr(replica_url.render_as_string(hide_password=False)),
        )
    )
    replica = read_engine(engine)
    assert replica is not None
    state = replica_of(engine)
    assert state is not None
    maker = create_sessionmaker(engine)

    async def request(work: Callable[..., Awaitable[Any]]) -> Any:
        async with transaction(maker) as db:
            return await work(db)

    try:
        user = await request(lambda db: make_user(db, "replica@example.com"))
        token, _ = await request(lambda db: sessions.issue(db, user.id))
        await request(lambda db: customers.create(db, CustomerCreate(name="Replicated")))
        await state.measure(engine)  # the lag is known: within DATABASE_READ_MAX_LAG
        before = state.reads

        found = await request(lambda db: sessions.validate(db, token))
        by_email = await request(lambda db: users.get_by_email(db, "replica@example.com"))
        page = await request(lambda db: customers.list(db, search="Replicated"))
        assert found is not None
        assert by_email is not None
        assert [c.name for c in page.items] == ["Replicated"]
        assert state.reads == before + 2  # validate read the primary

        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE sessions SET last_seen_at = now() - interval '1 day'")
            )
        assert await request(lambda db: sessions.validate(db, token)) is not None
        assert await request(lambda db: users.authenticate(db, "replica@example.com", PASSWORD))

        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with replica.begin() as connection:
                await connection.execute(text("DELETE FROM customers"))
    finally:
        await dispose(engine)
    assert read_engine(engine) is None
