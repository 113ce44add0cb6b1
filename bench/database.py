"""A benchmark database: created on the test server, migrated with Alembic, seeded by COPY."""

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.engine import URL

from app_db.models.types import uuid7
from app_db.security.passwords import HASHER
from app_db.security.tokens import hash_token, new_token
from app_db.settings import SessionSettings
from app_db.testing.server import TestServer

POLICY = SessionSettings(
    _env_file=None,
    idle_timeout=timedelta(days=1),
    max_lifetime=timedelta(days=2),
    touch_interval=timedelta(hours=1),
)


@dataclass
class Seed:
    """What the workloads look up: valid tokens, emails, user ids and page cursors."""

    tokens: list[str]
    emails: list[str]
    user_ids: list[uuid.UUID]
    cursors: list[tuple[datetime, uuid.UUID]]
    signed_in: list[uuid.UUID]
    """Users who each hold ``POLICY.max_per_user`` live sessions (the cap), for the login
    workloads alone: no other workload reads their sessions, which logins revoke."""


def plain_dsn(url: URL) -> str:
    """Return a DSN that asyncpg accepts (no ``+asyncpg`` driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server: TestServer) -> URL:
    return await server.create_migrated_database("bench_")


async def seed(url: URL, *, users: int, customers: int, signed_in: int = 0) -> Seed:
    """Insert users with one live session each, customers spread over time, and ``signed_in``
    more users at the session cap (sessions issued a minute apart in the last minutes)."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        now = datetime.now(UTC)
        hashed = HASHER.hash("bench password")
        user_rows = [(uuid7(), f"user{i}@example.com", hashed, now, now) for i in range(users)]
        await connection.copy_records_to_table(
            "users",
            records=user_rows,
            columns=("id", "email", "password_hash", "created_at", "updated_at"),
        )
        tokens = [new_token() for _ in range(users)]
        await connection.copy_records_to_table(
            "sessions",
            records=[
                (uuid7(), row[0], hash_token(token), now, now + POLICY.idle_timeout, now)
                for row, token in zip(user_rows, tokens, strict=True)
            ],
            columns=("id", "user_id", "token_hash", "created_at", "expires_at", "last_seen_at"),
        )
        capped = [(uuid7(), f"signed{i}@example.com", hashed, now, now) for i in range(signed_in)]
        await connection.copy_records_to_table(
            "users",
            records=capped,
            columns=("id", "email", "password_hash", "created_at", "updated_at"),
        )
        await connection.copy_records_to_table(
            "sessions",
            records=[session for row in capped for session in _sessions_at_cap(row[0], now)],
            columns=("id", "user_id", "token_hash", "created_at", "expires_at", "last_seen_at"),
        )
        customer_rows = [
            (
                uuid7(),
                f"Customer {i} {secrets.token_hex(3)}",
                f"c{i}@example.com",
                now - timedelta(seconds=customers - i),
            )
            for i in range(customers)
        ]
        await connection.copy_records_to_table(
            "customers",
            records=customer_rows,
            columns=("id", "name", "email", "created_at"),
        )
        # As autovacuum would leave the tables: hint bits set, visibility map built, so the
        # variant measured first does not pay for the first reads of freshly copied rows.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    step = max(1, (customers - 60) // 200)
    cursors = [(row[3], row[0]) for row in customer_rows[: max(1, customers - 60) : step]]
    return Seed(
        tokens=tokens,
        emails=[row[1] for row in user_rows],
        user_ids=[row[0] for row in user_rows],
        cursors=cursors,
        signed_in=[row[0] for row in capped],
    )


def _sessions_at_cap(user_id: uuid.UUID, now: datetime) -> Iterator[tuple[object, ...]]:
    """Yield ``POLICY.max_per_user`` live sessions of the user, issued a minute apart."""
    for age in range(POLICY.max_per_user, 0, -1):
        issued = now - timedelta(minutes=age)
        expires = issued + POLICY.idle_timeout
        yield (uuid7(), user_id, hash_token(new_token()), issued, expires, issued)


def describe_server(server: TestServer) -> str:
    source = "TEST_DATABASE_URL" if os.environ.get("TEST_DATABASE_URL") else "embedded"
    return f"{server.description} ({source})"
