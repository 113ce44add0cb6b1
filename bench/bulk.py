"""Workload 5: bulk import, one mode per process so that peak memory is the mode's own.

Run as ``python -m bench.bulk MODE ROWS DSN``; it prints one JSON line with rows/s and the
process's peak memory growth. Every load is rolled back.

- ``raw``: asyncpg's COPY of the same rows, unchecked;
- ``lib``: ``bulk_import`` of mappings, as from a file: every row is validated as it streams;
- ``lib-checked``: ``bulk_import`` of ``CustomerCreate`` instances validated before the clock
  starts (a ``CheckedInput`` is not validated again): the COPY path alone;
- ``lib-owned``, ``lib-checked-owned``: the same rows, each naming one owner, unscoped: the
  plain COPY of owned rows, whose foreign key PostgreSQL checks row by row;
- ``lib-scoped``, ``lib-checked-scoped``: the same in a transaction scoped to an owner, as a
  role of its own that the row-level security policy binds (made for the run and dropped after
  it, outside the timing): PostgreSQL refuses it ``COPY FROM``, so the import stages each
  chunk in a temporary table. ``lib`` and ``lib-checked`` run as the DSN's role, a superuser,
  with the plain COPY that every import used before the policy;
- ``orm``: ``session.add_all`` and a flush.
"""

import asyncio
import json
import resource
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app_db import create_engine, create_sessionmaker, customers, ownership
from app_db.models import Customer, CustomerCreate
from app_db.models.types import uuid7
from app_db.testing import settings_for

MODES = (
    "raw",
    "lib",
    "lib-owned",
    "lib-scoped",
    "lib-checked",
    "lib-checked-owned",
    "lib-checked-scoped",
    "orm",
)
COLUMNS = ("id", "name", "email", "phone", "owner_id")


def fields(rows: int) -> Iterator[tuple[str, str, str]]:
    for i in range(rows):
        yield f"Customer {i}", f"c{i}@example.com", "+1 555 0100"


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


async def raw(dsn: str, rows: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        transaction = connection.transaction()
        await transaction.start()
        records = ((uuid7(), name, email, phone, None) for name, email, phone in fields(rows))
        await connection.copy_records_to_table("customers", records=records, columns=COLUMNS)
        await transaction.rollback()
    finally:
        await connection.close()


async def through_library(
    dsn: str, rows: Iterable[Any], count: int, *, owner: uuid.UUID | None = None
) -> None:
    engine = create_engine(settings_for(make_url(dsn)), pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as db:
            if owner is not None:
                await ownership.scope(db, owner)
            assert await customers.bulk_import(db, rows) == count
            await db.rollback()
    finally:
        await engine.dispose()


def mappings(rows: int, owner: uuid.UUID | None = None) -> Iterator[dict[str, Any]]:
    named = {} if owner is None else {"owner_id": str(owner)}
    return ({"name": n, "email": e, "phone": p, **named} for n, e, p in fields(rows))


ROLE_SQL = """
CREATE ROLE {role} LOGIN;
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
"""
DROP_ROLE_SQL = "DROP OWNED BY {role}; DROP ROLE {role}"


async def bound_role(dsn: str) -> tuple[str, str, uuid.UUID]:
    """Make a role the policy binds and a user to own the rows; return its DSN, name, owner."""
    role = f"bench_rls_{secrets.token_hex(4)}"
    url = make_url(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(ROLE_SQL.format(role=role, database=url.database))
        owner = uuid7()
        await connection.execute(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'h')",
            owner,
            f"{role}@example.com",
        )
    finally:
        await connection.close()
    as_role = url.set(username=role, password=None).render_as_string(hide_password=False)
    return as_role, role, owner


async def drop_role(dsn: str, role: str, owner: uuid.UUID) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DELETE FROM users WHERE id = $1", owner)
        await connection.execute(DROP_ROLE_SQL.format(role=role))
    finally:
        await connection.close()


async def orm(dsn: str, rows: int) -> None:
    engine = create_engine(settings_for(make_url(dsn)), pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as db:
            db.add_all(Customer(name=n, email=e, phone=p) for n, e, p in fields(rows))
            await db.flush()
            await db.rollback()
    finally:
        await engine.dispose()


class PeakSampler:
    """Sample this process's resident memory every few milliseconds, in a thread."""

    def __init__(self) -> None:
        self.baseline = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


async def main(mode: str, rows: int, dsn: str) -> dict[str, float]:
    scoped = await bound_role(dsn) if mode.endswith(("-scoped", "-owned")) else None
    owner = None if scoped is None else scoped[2]
    checked: list[CustomerCreate] | None = None
    named = owner if mode.endswith("-owned") else None
    if mode.startswith("lib-checked"):
        checked = [
            CustomerCreate(name=n, email=e, phone=p, owner_id=named) for n, e, p in fields(rows)
        ]
    sampler = PeakSampler()
    started = time.perf_counter()
    sampler.__enter__()
    source: Iterable[Any] = mappings(rows, named) if checked is None else checked
    if mode == "raw":
        await raw(dsn, rows)
    elif mode == "orm":
        await orm(dsn, rows)
    elif scoped is not None and mode.endswith("-scoped"):
        await through_library(scoped[0], source, rows, owner=owner)
    else:
        await through_library(dsn, source, rows)
    elapsed = time.perf_counter() - started
    sampler.__exit__()
    if scoped is not None:
        await drop_role(dsn, scoped[1], scoped[2])
    growth = sampler.peak - sampler.baseline
    return {"rows_per_s": rows / elapsed, "peak_growth_mb": max(0, growth) / 2**20}


if __name__ == "__main__":
    mode, rows, dsn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    sys.stdout.write(json.dumps(asyncio.run(main(mode, rows, dsn))) + "\n")
