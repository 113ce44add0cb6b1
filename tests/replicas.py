"""Helpers for tests on a real primary and hot standby (the ``replicated`` pair)."""

import asyncio
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.cluster.replica import Replica, replica_of
from app_db.settings import Settings
from app_db.testing.replication import ReplicatedPair


def both(pair: ReplicatedPair, **values: Any) -> Settings:
    """Settings with the pair's primary as ``DATABASE_URL`` and its standby for reads."""
    return Settings(
        _env_file=None,
        database_url=SecretStr(pair.primary.dsn),
        database_read_url=SecretStr(pair.standby.dsn),
        **values,
    )


def replica_state(engine: AsyncEngine) -> Replica:
    found = replica_of(engine)
    assert found is not None
    return found


async def caught_up(pair: ReplicatedPair) -> None:
    """Wait until the standby has replayed all that the primary has written."""
    primary = await asyncpg.connect(pair.primary.dsn)
    standby = await asyncpg.connect(pair.standby.dsn)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        async with asyncio.timeout(15):
            while not await standby.fetchval(  # noqa: ASYNC110 - replay sends no event
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target
            ):
                await asyncio.sleep(0.02)
    finally:
        await primary.close()
        await standby.close()


async def on_node(dsn: str, sql: str, *args: object) -> Any:
    """Return the one value ``sql`` selects on a node, asked directly."""
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()
