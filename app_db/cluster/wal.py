"""WAL positions (LSNs): their text form, and reading one from a server in one round trip."""

import asyncio
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.pool import borrow, drop, give_back

PRIMARY_POSITION_SQL = "SELECT pg_current_wal_insert_lsn()::text"
"""Where the primary's next WAL record goes: past every commit that has returned."""
REPLAYED_POSITION_SQL = """
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                ELSE pg_current_wal_insert_lsn() END::text
"""
"""What a standby has replayed (a server that is not one has everything it wrote)."""
BEYOND_ANY = 1 << 64
"""A position past every WAL position: no replica ever covers it."""
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse(text: str | None) -> int | None:
    """Return the position of an LSN's text form (``16/B374D848``), or ``None``."""
    found = _LSN.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        return None
    return (int(found.group(1), 16) << 32) | int(found.group(2), 16)


def format_lsn(position: int) -> str:
    """Return the text form of a position, as PostgreSQL writes it."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


async def read(engine: AsyncEngine, sql: str, timeout: float | None) -> int | None:  # noqa: ASYNC109
    """Run a position query on a pooled connection of ``engine``, within ``timeout`` seconds.

    A connection that fails or times out is dropped, not given back: its server may hang.
    """
    async with asyncio.timeout(timeout):
        pooled = await borrow(engine)
        driver: Any = pooled.driver_connection
        try:
            text = await driver.fetchval(sql)
        except BaseException as exc:
            await drop(pooled, exc)
            raise
        await give_back(engine, pooled)
    return parse(text)
