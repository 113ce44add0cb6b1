"""Workloads 1 to 4: the same operation as raw asyncpg, naive SQLModel ORM, and app_db.

Workload 4, ``sessions.issue``, has two raw references: BEGIN, a plain INSERT and COMMIT, and
(``sessions.issue (same SQL)``) the statement app_db sends, which also revokes the user's live
sessions beyond the cap.

Each variant does one request's worth of work: take a connection, run the operation, give the
connection back. app_db runs inside ``transaction(...)``, as a web handler's dependency would.
"""

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
from sqlalchemy import func, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import customers, session_lookups, sessions, transaction, users
from app_db.models import Customer, Session, User
from app_db.models.types import uuid7
from app_db.pagination import encode_cursor
from app_db.security.tokens import hash_token, new_token
from app_db.sessions import issue_capped_sql
from bench.database import POLICY, Seed
from bench.harness import Operation

_S = session_lookups.SESSION_NAMES
_U = session_lookups.USER_NAMES
# The per-call statement as one would write it by hand: find the live session, touch it if due.
RAW_VALIDATE = f"""
    WITH found AS (
        SELECT {", ".join([f"s.{n}" for n in _S] + [f"u.{n} AS u_{n}" for n in _U])}
        FROM sessions AS s JOIN users AS u ON u.id = s.user_id
        WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
          AND u.is_active
    ), touched AS (
        UPDATE sessions AS t
        SET last_seen_at = now(),
            expires_at = LEAST(now() + $2::interval, t.created_at + $3::interval)
        FROM found
        WHERE t.id = found.id AND t.last_seen_at <= now() - $4::interval
        RETURNING t.id, t.last_seen_at, t.expires_at
    )
    SELECT found.*, touched.last_seen_at AS touched_last_seen_at
    FROM found LEFT JOIN touched ON touched.id = found.id
"""  # noqa: S608 - built from the model's column names only
RAW_BY_EMAIL = "SELECT * FROM users WHERE lower(email) = lower($1)"
RAW_PAGE = (
    "SELECT * FROM customers WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT 51"
)
RAW_ISSUE = (
    "INSERT INTO sessions (user_id, token_hash, expires_at) "
    "VALUES ($1, $2, now() + $3::interval) RETURNING *"
)


T = TypeVar("T")


@dataclass
class Variants:
    raw: Operation
    orm: Operation
    lib: Operation


def pick(values: list[T]) -> Callable[[int], T]:
    shuffled = random.Random(7).sample(values, len(values))
    return lambda i: shuffled[i % len(shuffled)]


def validate(
    pool: asyncpg.Pool, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], seed: Seed
) -> Variants:
    token = pick(seed.tokens)
    day, two_days, hour = POLICY.idle_timeout, POLICY.max_lifetime, POLICY.touch_interval

    async def raw(i: int) -> object:
        async with pool.acquire() as connection:
            return await connection.fetchrow(
                RAW_VALIDATE, hash_token(token(i)), day, two_days, hour
            )

    async def orm(i: int) -> object:
        async with AsyncSession(engine) as db:
            result = await db.exec(
                select(Session, User)
                .join(User, col(User.id) == col(Session.user_id))
                .where(
                    col(Session.token_hash) == hash_token(token(i)),
                    col(Session.revoked_at).is_(None),
                    col(Session.expires_at) > func.now(),
                    col(User.is_active),
                )
            )
            return result.first()

    async def lib(i: int) -> object:
        async with transaction(maker) as db:
            return await sessions.validate(db, token(i), settings=POLICY)

    return Variants(raw, orm, lib)


def get_by_email(
    pool: asyncpg.Pool, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], seed: Seed
) -> Variants:
    email = pick(seed.emails)

    async def raw(i: int) -> object:
        async with pool.acquire() as connection:
            return await connection.fetchrow(RAW_BY_EMAIL, email(i))

    async def orm(i: int) -> object:
        async with AsyncSession(engine) as db:
            result = await db.exec(
                select(User).where(func.lower(User.email) == func.lower(email(i)))
            )
            return result.first()

    async def lib(i: int) -> object:
        async with transaction(maker) as db:
            return await users.get_by_email(db, email(i))

    return Variants(raw, orm, lib)


def list_page(
    pool: asyncpg.Pool, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], seed: Seed
) -> Variants:
    position = pick(seed.cursors)

    async def raw(i: int) -> object:
        created_at, row_id = position(i)
        async with pool.acquire() as connection:
            rows = await connection.fetch(RAW_PAGE, created_at, row_id)
        return encode_cursor(rows[49]["created_at"], rows[49]["id"]) if len(rows) > 50 else None

    async def orm(i: int) -> object:
        created_at, row_id = position(i)
        async with AsyncSession(engine) as db:
            result = await db.exec(
                select(Customer)
                .where(tuple_(col(Customer.created_at), col(Customer.id)) > (created_at, row_id))
                .order_by(col(Customer.created_at), col(Customer.id))
                .limit(51)
            )
            rows = result.all()
        return encode_cursor(rows[49].created_at, rows[49].id) if len(rows) > 50 else None

    async def lib(i: int) -> object:
        created_at, row_id = position(i)
        async with transaction(maker) as db:
            page = await customers.list(db, limit=50, cursor=encode_cursor(created_at, row_id))
        return page.next_cursor

    return Variants(raw, orm, lib)


LOGIN_GROUPS = 4
"""The login workloads' variants that sign users in: raw, ORM and app_db, and the same-SQL
reference's raw variant."""


def signing_in(seed: Seed, group: int) -> Callable[[int], uuid.UUID]:
    """Return the users that one variant of the login workloads signs in, each at the cap.

    Each variant signs in users of its own, as an app signs in its users. Shared users would
    have app_db's login revoke the sessions that the plain INSERTs of the other variants left
    beyond the cap (two or three a login, not the one of a user at the cap), and revoke the
    sessions that the other workloads validate.
    """
    users = seed.signed_in[group::LOGIN_GROUPS]
    if not users:
        raise ValueError("the login workloads need users at the cap: seed(..., signed_in=N)")
    return pick(users)


def issue(
    pool: asyncpg.Pool, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], seed: Seed
) -> Variants:
    """``sessions.issue`` for users at the cap (each login revokes their oldest session),
    against a plain INSERT for users as signed in."""
    raw_user, orm_user, lib_user = (signing_in(seed, group) for group in range(3))
    lifetime = timedelta(hours=1)

    async def raw(i: int) -> object:
        # BEGIN, INSERT, COMMIT: a unit of work that the caller could extend, as app_db's is.
        async with pool.acquire() as connection, connection.transaction():
            return await connection.fetchrow(
                RAW_ISSUE, raw_user(i), hash_token(new_token()), lifetime
            )

    async def orm(i: int) -> object:
        async with AsyncSession(engine) as db:
            session = Session(
                user_id=orm_user(i),
                token_hash=hash_token(new_token()),
                expires_at=datetime.now(UTC) + lifetime,
            )
            db.add(session)
            await db.commit()
        return session

    async def lib(i: int) -> object:
        async with transaction(maker) as db:
            return await sessions.issue(db, lib_user(i), ttl=lifetime, settings=POLICY)

    return Variants(raw, orm, lib)


def issue_same_sql(
    pool: asyncpg.Pool, engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], seed: Seed
) -> Variants:
    """``sessions.issue`` against raw asyncpg sending the statement and values app_db sends.

    ``issue``'s raw variant inserts the row alone; app_db's statement also revokes the user's
    live sessions beyond ``SESSION_MAX_PER_USER``, which costs the server more.
    """
    library = issue(pool, engine, maker, seed)
    user_id = signing_in(seed, 3)
    lifetime = timedelta(hours=1)
    statement = issue_capped_sql(POLICY.max_per_user - 1)

    async def raw(i: int) -> object:
        async with pool.acquire() as connection, connection.transaction():
            return await connection.fetchrow(
                statement, uuid7(), user_id(i), hash_token(new_token()), None, None, lifetime
            )

    return Variants(raw, library.orm, library.lib)


WORKLOADS = {
    "sessions.validate": validate,
    "users.get_by_email": get_by_email,
    "customers.list (50, cursor)": list_page,
    "sessions.issue": issue,
    "sessions.issue (same SQL)": issue_same_sql,
}
