"""What the default pool's overflow and the pool's order cost a workload, in one process.

Run as ``uv run python -m bench.pool_churn [WORKLOAD] [ROUNDS]`` (``sessions.validate``, 5
rounds by default). Four engines on one benchmark database take turns at concurrency 32 with
raw asyncpg (a pool of 15): the library's defaults (10 + 5, first in, first out, overflow
kept as spares for ``DATABASE_POOL_OVERFLOW_IDLE`` seconds); the same with overflow closed on
its return, as SQLAlchemy's pool does (``DATABASE_POOL_OVERFLOW_IDLE=0``); that, handing out
the connection returned last (``pool_use_lifo``); and no overflow (10 + 0). Each turn first
runs the naive ORM version of the workload on the same engine (untimed): it holds up to 15
connections, so an overflow that closes on its return makes the pool open new connections
and close others, as other work of an app does. With ``--no-churn`` the turns run without it. It
prints each engine's median rate and the connections its pool opened and closed during the
timed part.
"""

import argparse
import asyncio
import statistics
import sys
from collections import Counter
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db import create_engine, create_sessionmaker
from app_db.testing import settings_for
from app_db.testing.server import find_test_server
from bench.database import create_database, plain_dsn, seed
from bench.harness import throughput
from bench.lookups import WORKLOADS

NO_SPARES = {"database_pool_overflow_idle": 0}
ENGINES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # settings, engine options
    "10+5 (default)": ({}, {}),
    "10+5 no spares": (NO_SPARES, {}),
    "no spares, LIFO": (NO_SPARES, {"pool_use_lifo": True}),
    "10+0": ({}, {"max_overflow": 0}),
}
OPS = 5_000
CHURN_OPS = 1_000


def _count(engine: AsyncEngine, counts: Counter[str]) -> None:
    for name in ("connect", "close"):
        event.listen(engine.sync_engine.pool, name, lambda *_, name=name: counts.update((name,)))


async def main(workload: str, rounds: int, *, churn: bool) -> None:
    server = find_test_server()
    try:
        url = await create_database(server)
        try:
            data = await seed(url, users=10_000, customers=20_000, signed_in=10_000)
            pool = await asyncpg.create_pool(plain_dsn(url), min_size=10, max_size=15)
            engines = {
                name: create_engine(settings_for(url).model_copy(update=changed), **options)
                for name, (changed, options) in ENGINES.items()
            }
            counts = {name: Counter[str]() for name in engines}
            variants = {
                name: WORKLOADS[workload](pool, engine, create_sessionmaker(engine), data)
                for name, engine in engines.items()
            }
            try:
                for variant in variants.values():  # untimed: every pooled backend prepares
                    await throughput(variant.lib, total=OPS // 2, concurrency=32)
                for name, engine in engines.items():
                    _count(engine, counts[name])
                rates: dict[str, list[float]] = {name: [] for name in [*engines, "raw"]}
                for _ in range(rounds):
                    for name, variant in variants.items():
                        if churn:
                            await throughput(variant.orm, total=CHURN_OPS, concurrency=32)
                        rates[name].append(await throughput(variant.lib, total=OPS, concurrency=32))
                    first = next(iter(variants.values()))
                    rates["raw"].append(await throughput(first.raw, total=OPS, concurrency=32))
            finally:
                await pool.close()
                for engine in engines.values():
                    await engine.dispose()
        finally:
            await server.drop_database(url)
    finally:
        server.close()
    raw = statistics.median(rates["raw"])
    sys.stdout.write(f"{workload}, c=32, {rounds} rounds, ORM turns between: {churn}\n")
    for name, found in rates.items():
        median = statistics.median(found)
        line = f"  {name:16} {median:8.0f}/s  {median / raw:5.2f}x raw"
        if name in counts:
            line += f"  connects {counts[name]['connect']}, closes {counts[name]['close']}"
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.pool_churn", description=__doc__)
    parser.add_argument("workload", nargs="?", default="sessions.validate", choices=WORKLOADS)
    parser.add_argument("rounds", nargs="?", type=int, default=5)
    parser.add_argument("--no-churn", action="store_true", help="no ORM turns between")
    args = parser.parse_args()
    asyncio.run(main(args.workload, args.rounds, churn=not args.no_churn))
