"""40 concurrent logins: peak memory and throughput, bounded hashing against the default executor.

    uv run python -m bench.hashing

Each way runs in a process of its own, so its peak memory (``ru_maxrss``) is its own:

- ``default executor``: every hash through ``asyncio.to_thread``, as app_db did before the
  bound; the loop's default executor runs min(32, cores + 4) threads;
- ``default executor, 32 threads``: the same with the executor a 32-core server gets;
- ``app_db``: what the library does now, at most ``PASSWORD_HASH_CONCURRENCY`` (4) at once.
"""

import asyncio
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app_db import create_engine, create_sessionmaker, transaction, users
from app_db.engine import dispose
from app_db.models.types import uuid7
from app_db.security import passwords as app_passwords
from app_db.testing import settings_for
from app_db.testing.server import find_test_server
from bench.database import create_database, plain_dsn

LOGINS = 40
PASSWORD = "bench: correct horse battery"  # noqa: S105 - a throwaway benchmark password
WAYS = ("default executor", "default executor, 32 threads", "app_db")


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


async def one_way(way: str, dsn: str) -> dict[str, Any]:
    if way.startswith("default executor"):

        async def through_to_thread(function: Any, *args: object) -> Any:
            return await asyncio.to_thread(function, *args)

        app_passwords._in_worker = through_to_thread
        if way.endswith("32 threads"):
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
    engine = create_engine(settings_for(make_url(dsn)))
    maker = create_sessionmaker(engine)
    try:
        async with transaction(maker) as db:  # warm: pool, statement cache, argon2's first call
            assert await users.authenticate(db, "login0@example.com", PASSWORD) is not None
        before = rss_mb()
        started = time.perf_counter()

        async def login(n: int) -> None:
            async with transaction(maker) as db:
                assert await users.authenticate(db, f"login{n}@example.com", PASSWORD)

        await asyncio.gather(*(login(n) for n in range(LOGINS)))
        seconds = time.perf_counter() - started
    finally:
        await dispose(engine)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "way": way,
        "logins_per_s": LOGINS / seconds,
        "seconds": seconds,
        "peak_growth_mb": peak - before,
    }


async def seeded_database() -> tuple[Any, Any, str]:
    server = find_test_server()
    url = await create_database(server)
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        hashed = app_passwords.HASHER.hash(PASSWORD)
        await connection.copy_records_to_table(
            "users",
            records=[(uuid7(), f"login{n}@example.com", hashed) for n in range(LOGINS)],
            columns=("id", "email", "password_hash"),
        )
    finally:
        await connection.close()
    return server, url, plain_dsn(url)


def main() -> None:
    server, url, dsn = asyncio.run(seeded_database())
    try:
        results = []
        for way in WAYS:
            done = subprocess.run(
                [sys.executable, "-m", "bench.hashing", "--way", way, dsn],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(done.stdout))
    finally:
        asyncio.run(server.drop_database(url))
        server.close()
    sys.stdout.write(f"{LOGINS} concurrent logins (users.authenticate, argon2id m=64 MiB)\n")
    for r in results:
        sys.stdout.write(
            f"  {r['way']:32} {r['logins_per_s']:6.1f} logins/s  {r['seconds']:5.2f} s"
            f"  peak memory growth {r['peak_growth_mb']:6.0f} MB\n"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--way"]:
        result = asyncio.run(one_way(sys.argv[2], sys.argv[3]))
        sys.stdout.write(json.dumps(result))
    else:
        main()
