"""Workload 7: ``customers.list`` with a search term among 400,000 customers, p50/p95 per case.

Each case runs one term at one page size, from the start or from a cursor half way, with the
server told to plan the prepared statement generically or anew for each call
(``plan_cache_mode``): both plans must stay fast. The table is seeded by COPY, then vacuumed
and analysed, as autovacuum would leave it. ``uv run python -m bench.search [--smoke]`` runs
this workload alone.
"""

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from app_db import create_engine, create_sessionmaker, customers, transaction
from app_db.models.types import uuid7
from app_db.pagination import encode_cursor
from app_db.testing.plugin import settings_for
from app_db.testing.server import TestServer, find_test_server
from bench.database import plain_dsn
from bench.harness import percentile

ROWS = 400_000
LIMITS = (1, 5, 50)
PLANS = ("force_generic_plan", "force_custom_plan")


@dataclass(frozen=True)
class Term:
    kind: str
    text: str


def terms(rows: int) -> list[Term]:
    """Terms whose matches the seed decides: every name is "Customer <i> <6 hex digits>"."""
    near_end = rows * 99 // 100
    return [
        Term("rare (1 row, 99% in)", f"c{near_end}@"),
        Term("absent", "zanzibar"),
        Term("common (every row)", "customer"),
        Term("medium (1 in 36, in runs)", "customer 12"),
        Term("common (28%, in runs)", "customer 3"),
        Term("rare, common words", f"customer {near_end} "),
        Term("2 letters, common", "om"),
        Term("2 letters, 1 in 50", "e4"),
        Term("2 letters, absent", "qz"),
    ]


async def seed(url: URL, rows: int) -> list[tuple[datetime, Any]]:
    """COPY ``rows`` customers, one second apart; return each one's (created_at, id)."""
    hexes = random.Random(11)
    start = datetime.now(UTC) - timedelta(seconds=rows)
    records = [
        (
            uuid7(),
            f"Customer {i} {hexes.getrandbits(24):06x}",
            f"c{i}@example.com",
            start + timedelta(seconds=i),
        )
        for i in range(rows)
    ]
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        # The new rows' trigrams wait in the GIN pending lists; VACUUM then files them all
        # at once, several times faster than keeping the indexes current row by row.
        await connection.execute("SET gin_pending_list_limit = '2GB'")
        await connection.copy_records_to_table(
            "customers", records=records, columns=("id", "name", "email", "created_at")
        )
        await connection.execute("VACUUM (ANALYZE) customers")
    finally:
        await connection.close()
    return [(created_at, row_id) for row_id, _, _, created_at in records]


async def measure(
    url: URL, plan: str, cases: list[tuple[Term, int, str | None]], calls: int
) -> list[list[float]]:
    """Time ``calls`` calls of each case through app_db, on connections planning as ``plan``."""
    settings = settings_for(url)
    connect_args = settings.connect_args()
    connect_args["server_settings"] = {**connect_args["server_settings"], "plan_cache_mode": plan}
    engine = create_engine(settings, pool_size=1, max_overflow=0, connect_args=connect_args)
    maker = create_sessionmaker(engine)
    timings = []
    try:
        for term, limit, cursor in cases:
            measured = []
            for call in range(calls + 2):
                started = time.perf_counter()
                async with transaction(maker) as db:
                    await customers.list(db, limit=limit, cursor=cursor, search=term.text)
                if call >= 2:  # the first two calls warm the cache up
                    measured.append((time.perf_counter() - started) * 1000)
            timings.append(measured)
    finally:
        await engine.dispose()
    return timings


async def run(server: TestServer, *, smoke: bool) -> list[dict[str, Any]]:
    """Seed a database of its own, time every case, drop the database; return the figures."""
    rows, calls = (3_000, 3) if smoke else (ROWS, 40)
    url = await server.create_migrated_database("bench_search_")
    try:
        started = time.perf_counter()
        keys = await seed(url, rows)
        seeded_s = time.perf_counter() - started
        half_way = encode_cursor(*keys[rows // 2])
        cases = [
            (term, limit, cursor)
            for term in terms(rows)
            for cursor in (None, half_way)
            for limit in LIMITS
        ]
        results = []
        for plan in PLANS:
            timings = await measure(url, plan, cases, calls)
            for (term, limit, cursor), measured in zip(cases, timings, strict=True):
                results.append(
                    {
                        "term": term.kind,
                        "search": term.text,
                        "limit": limit,
                        "cursor": "half way" if cursor else "none",
                        "plan": plan.removeprefix("force_").removesuffix("_plan"),
                        "p50_ms": percentile(measured, 0.50),
                        "p95_ms": percentile(measured, 0.95),
                        "rows": rows,
                        "seed_s": seeded_s,
                    }
                )
        return results
    finally:
        await server.drop_database(url)


def print_rows(results: list[dict[str, Any]]) -> None:
    """Print p50/p95 in ms per term and cursor, one column per plan and limit."""
    if not results:
        return
    first = results[0]
    print(
        f"\ncustomers.list(search=...) among {first['rows']:,} customers "
        f"(seeded in {first['seed_s']:.1f} s): p50/p95 ms"
    )
    columns = list(dict.fromkeys((r["plan"], r["limit"]) for r in results))
    print(f"{'term':28} {'cursor':9}" + "".join(f" {p[:3]} {n:>3}".rjust(14) for p, n in columns))
    rows: dict[tuple[str, str], dict[tuple[str, int], str]] = {}
    for r in results:
        cell = f"{r['p50_ms']:.1f}/{r['p95_ms']:.1f}"
        rows.setdefault((r["term"], r["cursor"]), {})[(r["plan"], r["limit"])] = cell
    for (term, cursor), cells in rows.items():
        print(f"{term:28} {cursor:9}" + "".join(cells[c].rjust(14) for c in columns))


async def main(*, smoke: bool) -> None:
    server = find_test_server()
    try:
        print_rows(await run(server, smoke=smoke))
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(smoke="--smoke" in sys.argv[1:]))
