"""Workload 5: bulk import, one mode per process so that peak memory is the mode's own.

Run as ``python -m bench.bulk MODE ROWS DSN``; it prints one JSON line with rows/s and the
process's peak memory growth. Every load is rolled back.
"""

import asyncio
import json
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app_db import create_engine, create_sessionmaker, customers
from app_db.models import Customer, CustomerCreate
from app_db.models.types import uuid7
from app_db.testing import settings_for

MODES = ("raw", "lib", "lib-from-dicts", "orm")
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


async def through_library(dsn: str, rows: int, *, from_dicts: bool) -> None:
    engine = create_engine(settings_for(make_url(dsn)), pool_size=1, max_overflow=0)
    source: Iterator[Any]
    if from_dicts:
        source = ({"name": n, "email": e, "phone": p} for n, e, p in fields(rows))
    else:
        source = (
            CustomerCreate.model_construct(name=n, email=e, phone=p, owner_id=None)
            for n, e, p in fields(rows)
        )
    try:
        async with create_sessionmaker(engine)() as db:
            assert await customers.bulk_import(db, source) == rows
            await db.rollback()
    finally:
        await engine.dispose()


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
    sampler = PeakSampler()
    started = time.perf_counter()
    sampler.__enter__()
    if mode == "raw":
        await raw(dsn, rows)
    elif mode == "orm":
        await orm(dsn, rows)
    else:
        await through_library(dsn, rows, from_dicts=mode == "lib-from-dicts")
    elapsed = time.perf_counter() - started
    sampler.__exit__()
    growth = sampler.peak - sampler.baseline
    return {"rows_per_s": rows / elapsed, "peak_growth_mb": max(0, growth) / 2**20}


if __name__ == "__main__":
    mode, rows, dsn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    sys.stdout.write(json.dumps(asyncio.run(main(mode, rows, dsn))) + "\n")
