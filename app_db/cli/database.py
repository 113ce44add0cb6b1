"""``app-db migrate``, ``check`` and ``purge``: the commands that reach the database."""

import argparse
import asyncio
from pathlib import Path

from sqlalchemy import Connection, text

from app_db import health, sessions, users
from app_db.cli.output import fail, masked, say
from app_db.engine import create_engine, create_sessionmaker, dispose
from app_db.migrations import (
    Status,
    current_revisions,
    project_config,
    revisions_between,
    status,
    upgrade,
)
from app_db.observe.stats import PoolStats
from app_db.security import throttle
from app_db.settings import Settings, load_settings


def config_file(args: argparse.Namespace) -> Path | None:
    """Return ``--config``, else the ``alembic.ini`` of the current folder, else ``None``."""
    given: Path | None = args.config
    if given is None:
        return project_config()
    if not given.is_file():
        raise FileNotFoundError(f"no Alembic configuration at {given}")
    return given


async def inspect(settings: Settings) -> tuple[str, tuple[str, ...]]:
    """Return the server's version and the revisions the database holds."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            version = str(await connection.scalar(text("SHOW server_version")))

            def current(sync: Connection) -> tuple[str, ...]:
                return current_revisions(sync)

            return version, await connection.run_sync(current)
    finally:
        await dispose(engine)


def _revisions(names: tuple[str, ...]) -> str:
    return ", ".join(names) or "none"


def migrate_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    config = config_file(args)
    _, before = asyncio.run(inspect(settings))
    if status(before, config_file=config).state == "at head":
        say(f"{masked(settings)} is at head ({_revisions(before)}): nothing to do")
        return 0
    upgrade(settings, config_file=config)
    _, after = asyncio.run(inspect(settings))
    for revision, message in revisions_between(before, after, config_file=config):
        say(f"applied {revision}: {message}")
    say(f"{masked(settings)} is at head ({_revisions(after)})")
    return 0


def check_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    config = config_file(args)
    version, current = asyncio.run(inspect(settings))
    found = status(current, config_file=config)
    say(f"database: {masked(settings)}")
    say(f"server: PostgreSQL {version}")
    say(f"migrations: {config or 'app_db only'}")
    say(
        f"pool: size {settings.database_pool_size}, max overflow {settings.database_max_overflow}"
        f" (idle up to {settings.database_pool_overflow_idle:g} s),"
        f" timeout {settings.database_pool_timeout:g} s, recycle {settings.database_pool_recycle}"
        f" s, pre-ping {'on' if settings.database_pool_pre_ping else 'off'}"
    )
    report = asyncio.run(_probe(settings))
    say(f"probe: SELECT 1 in {report.latency_ms:g} ms; {pool_line(report.pool)}")
    if report.replica is not None:
        replica = report.replica
        state = "answers" if replica.ok else f"fails ({replica.error})"
        lag = "unknown" if replica.lag_s is None else f"at most {replica.lag_s:.3g} s"
        say(
            f"read replica: {state} in {replica.latency_ms:g} ms; lag {lag}; reads go to "
            f"{'the replica' if replica.route == 'replica' else f'the primary ({replica.route})'}"
        )
    return _report(found)


async def _probe(settings: Settings) -> health.Health:
    engine = create_engine(settings)
    try:
        return await health.check(engine)
    finally:
        await dispose(engine)


def pool_line(stats: PoolStats) -> str:
    """Describe a pool's numbers on one line."""
    return (
        f"pool now {stats.in_use} in use, {stats.idle} idle, {stats.overflow} overflow, "
        f"{stats.waiting} waiting; since start {stats.timeouts} timeouts, "
        f"{stats.invalidated} invalidated, {stats.replica_fallbacks} replica fallbacks"
    )


def _report(found: Status) -> int:
    current, heads = _revisions(found.current), _revisions(found.heads)
    if found.state == "at head":
        say(f"revision: {current} (at head)")
        return 0
    if found.state == "ahead":
        say(f"revision: {current} (ahead: {_revisions(found.unknown)} unknown to this code)")
        return 0
    say(f"revision: {current}, heads: {heads}")
    if found.state == "behind":
        return fail(f"database is behind head ({current}; heads are {heads}): run app-db migrate")
    return fail(
        f"database holds {_revisions(found.unknown)}, unknown to these migrations: "
        "run from the project's folder or pass --config"
    )


async def _purge(settings: Settings, batch_size: int) -> tuple[int, ...]:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    maker = create_sessionmaker(engine)
    totals = []
    try:
        for purge in (sessions.purge_expired, throttle.purge_expired, users.purge_tokens):
            total = 0
            while True:
                async with maker() as db, db.begin():
                    deleted = await purge(db, batch_size=batch_size, max_batches=1)
                total += deleted
                if deleted < batch_size:
                    break
            totals.append(total)
    finally:
        await dispose(engine)
    return tuple(totals)


def purge_command(args: argparse.Namespace) -> int:
    expired, quiet, tokens = asyncio.run(_purge(load_settings(), args.batch_size))
    say(
        f"deleted {expired} expired sessions, {quiet} quiet login counters"
        f" and {tokens} spent or expired one-time tokens"
    )
    return 0
