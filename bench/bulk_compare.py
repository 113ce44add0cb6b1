"""Workload 5, interleaved: the bulk import modes in turn, several rounds, medians and ratios.

Run as ``uv run python -m bench.bulk_compare [ROWS] [ROUNDS]`` (100,000 rows, 3 rounds by
default). It makes a migrated, seeded database on the test server (``TEST_DATABASE_URL``, or
the embedded one), runs each mode of ``bench.bulk`` in a process of its own, round after
round, and prints each mode's median rows/s. A scoped import is set against the unscoped COPY
of the same rows, which name the scope's owner (the rows a scope writes), and against the COPY
of rows that name no owner, which skips the foreign key check that any owned row costs.
"""

import asyncio
import json
import statistics
import subprocess
import sys

from app_db.testing.server import find_test_server
from bench.database import create_database, plain_dsn, seed

MODES = (
    "raw",
    "lib-checked",
    "lib-checked-owned",
    "lib-checked-scoped",
    "lib",
    "lib-owned",
    "lib-scoped",
)
REFERENCES = {
    "lib-checked-owned": ("lib-checked",),
    "lib-checked-scoped": ("lib-checked-owned", "lib-checked"),
    "lib-owned": ("lib",),
    "lib-scoped": ("lib-owned", "lib"),
}


def one(mode: str, rows: int, dsn: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bulk", mode, str(rows), dsn],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


async def main(rows: int, rounds: int) -> None:
    server = find_test_server()
    try:
        url = await create_database(server)
        try:
            await seed(url, users=10_000, customers=20_000)
            dsn = plain_dsn(url)
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(rounds):
                for mode in MODES:
                    result = await asyncio.to_thread(one, mode, rows, dsn)
                    rates[mode].append(result["rows_per_s"])
        finally:
            await server.drop_database(url)
    finally:
        server.close()
    median = {mode: statistics.median(found) for mode, found in rates.items()}
    for mode in MODES:
        line = f"{mode:20} {median[mode]:8.0f} rows/s (median; {sorted(map(round, rates[mode]))})"
        ratios = (f"{median[mode] / median[base]:.2f}x {base}" for base in REFERENCES.get(mode, ()))
        line += "".join(f"  {ratio}" for ratio in ratios)
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    given = sys.argv[1:]
    asyncio.run(main(int(given[0]) if given else 100_000, int(given[1]) if given[1:] else 3))
