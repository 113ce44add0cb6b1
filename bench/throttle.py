"""Login throttling at the default settings: what a refusal costs, and what guesses cost others.

    uv run python -m bench.throttle

- ``refused``: 200 attempts from a throttled network, one after another: each one's latency
  (the goal: under 30 ms), beside a raw asyncpg ``SELECT 1`` round trip for scale;
- ``owner``: the owner's login from their own network, alone, and while 40 concurrent wrong
  guesses arrive from one other network, at the owner's account (``targeted``) or at 40
  accounts (``sprayed``); the delay is the difference of the medians (the goal: at most
  0.5 s). Rounds interleave; each starts with no counters.
"""

import asyncio
import statistics
import sys
import time
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import ThrottledError, create_engine, create_sessionmaker, transaction, users
from app_db.engine import dispose
from app_db.models.types import uuid7
from app_db.security import passwords
from app_db.testing import settings_for
from app_db.testing.server import find_test_server
from bench.database import create_database, plain_dsn
from bench.harness import percentile

PASSWORD = "bench: correct horse battery"  # noqa: S105 - a throwaway benchmark password
WRONG = "bench: not the password"
ATTACKER = "203.0.113.7"
OWNER = "198.51.100.4"
GUESSES = 40
ROUNDS = 5


async def log_in(
    maker: async_sessionmaker[AsyncSession], email: str, password: str, ip: str
) -> str:
    try:
        async with transaction(maker) as db:
            user = await users.authenticate(db, email, password, ip=ip)
    except ThrottledError:
        return "throttled"
    return "ok" if user is not None else "failed"


async def refused(maker: async_sessionmaker[AsyncSession], dsn: str) -> dict[str, float]:
    for _ in range(7):  # five free failures, then a delay starts
        await log_in(maker, "user0@example.com", WRONG, ATTACKER)
    took = []
    for _ in range(200):
        started = time.perf_counter()
        assert await log_in(maker, "user0@example.com", WRONG, ATTACKER) == "throttled"
        took.append((time.perf_counter() - started) * 1000)
    connection = await asyncpg.connect(dsn)
    try:
        trips = []
        for _ in range(200):
            started = time.perf_counter()
            await connection.fetchval("SELECT 1")
            trips.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    return {
        "p50_ms": statistics.median(took),
        "p99_ms": percentile(took, 0.99),
        "max_ms": max(took),
        "select_1_ms": statistics.median(trips),
    }


async def owner_login(
    maker: async_sessionmaker[AsyncSession], engine: AsyncEngine, guesses: str
) -> float:
    async with engine.begin() as connection:
        await connection.exec_driver_sql("DELETE FROM throttles")
    attack = []
    if guesses != "none":
        emails = [
            "owner@example.com" if guesses == "targeted" else f"user{n}@example.com"
            for n in range(GUESSES)
        ]
        attack = [asyncio.ensure_future(log_in(maker, e, WRONG, ATTACKER)) for e in emails]
        await asyncio.sleep(0.05)  # the guesses are in before the owner
    started = time.perf_counter()
    assert await log_in(maker, "owner@example.com", PASSWORD, OWNER) == "ok"
    took = time.perf_counter() - started
    await asyncio.gather(*attack)
    return took


async def seeded(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        hashed = passwords.HASHER.hash(PASSWORD)
        rows = [(uuid7(), f"user{n}@example.com", hashed) for n in range(GUESSES)]
        rows.append((uuid7(), "owner@example.com", hashed))
        await connection.copy_records_to_table(
            "users", records=rows, columns=("id", "email", "password_hash")
        )
    finally:
        await connection.close()


async def main() -> None:
    server = find_test_server()
    url = await create_database(server)
    engine = create_engine(settings_for(url))
    maker = create_sessionmaker(engine)
    results: dict[str, Any] = {}
    try:
        await seeded(plain_dsn(url))
        await log_in(maker, "owner@example.com", PASSWORD, OWNER)  # warm: pool, argon2
        results["refused"] = await refused(maker, plain_dsn(url))
        times: dict[str, list[float]] = {"none": [], "targeted": [], "sprayed": []}
        for _ in range(ROUNDS):
            for guesses, measured in times.items():
                measured.append(await owner_login(maker, engine, guesses))
        results["owner"] = {k: statistics.median(v) for k, v in times.items()}
    finally:
        await dispose(engine)
        await server.drop_database(url)
        server.close()
    r, o = results["refused"], results["owner"]
    sys.stdout.write(
        f"refused attempt: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms,"
        f" max {r['max_ms']:.2f} ms (one raw asyncpg round trip: {r['select_1_ms']:.2f} ms)\n"
        f"owner's login, median of {ROUNDS}: alone {o['none']:.3f} s;"
        f" with {GUESSES} guesses from one network at their account {o['targeted']:.3f} s"
        f" (+{o['targeted'] - o['none']:.3f} s), at {GUESSES} accounts {o['sprayed']:.3f} s"
        f" (+{o['sprayed'] - o['none']:.3f} s)\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
