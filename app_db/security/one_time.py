"""One-time tokens for a user and a purpose (a password reset, an email verification).

Built like session tokens: 256 bits from the OS's CSPRNG, only the SHA-256 stored, an expiry,
used once. Issuing a token voids the user's older unused tokens of that purpose. Every
statement runs in the caller's transaction.
"""

import uuid
from datetime import timedelta
from functools import cache
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.models.types import uuid7
from app_db.security.tokens import hash_token, is_well_formed, new_token
from app_db.settings import TokenSettings, load_token_settings

_INSERT = """
INSERT INTO one_time_tokens (id, user_id, purpose, token_hash, expires_at)
SELECT $3, target.id, $2, $4, now() + $5::interval FROM target
RETURNING user_id
"""
_VOID = """
DELETE FROM one_time_tokens AS t USING target
WHERE t.user_id = target.id AND t.purpose = $2 AND t.used_at IS NULL
"""
ISSUE_SQL = f"""
WITH target AS (SELECT id FROM users WHERE id = $1),
voided AS ({_VOID}),
issued AS ({_INSERT})
SELECT user_id FROM issued
"""  # noqa: S608 - built from constants only
"""Issue a token for the user ``$1`` (``$2`` the purpose, ``$3`` its id, ``$4`` its hash,
``$5`` its lifetime), voiding the user's unused tokens of that purpose."""
ISSUE_BY_EMAIL_SQL = f"""
WITH target AS (SELECT id FROM users WHERE lower(email) = lower($1) AND is_active),
voided AS ({_VOID}),
issued AS ({_INSERT})
SELECT pg_current_xact_id() AS xact, (SELECT user_id FROM issued) AS user_id
"""  # noqa: S608 - built from constants only
"""Issue a token for the active user whose email is ``$1``, if there is one. Either way the
transaction gets an id (``pg_current_xact_id``), so its COMMIT flushes the WAL whether a row
was written or not: an unknown email costs the same commit as a known one."""
FIND_SQL = """
SELECT user_id FROM one_time_tokens
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
"""
SPEND_SQL = """
UPDATE one_time_tokens SET used_at = now()
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
RETURNING user_id
"""
VOID_SQL = """
DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = ANY($2::text[]) AND used_at IS NULL
"""
PURGE_SQL = """
WITH batch AS MATERIALIZED (
    SELECT id FROM one_time_tokens WHERE used_at IS NOT NULL OR expires_at <= now()
    LIMIT $1 FOR UPDATE SKIP LOCKED
)
DELETE FROM one_time_tokens WHERE id IN (SELECT id FROM batch)
"""


async def _first(db: AsyncSession, sql: str, *args: object) -> Any:
    """Run a statement on the session's own connection, in its transaction: first row or None.

    Never on a borrowed connection: these rows belong to the caller's transaction.
    """
    connection = await db.connection()
    return (await connection.exec_driver_sql(sql, args)).mappings().first()


@cache
def default_settings() -> TokenSettings:
    """Return the token settings from the environment, read once."""
    return load_token_settings()


async def issue(
    db: AsyncSession, user_id: uuid.UUID, purpose: str, lifetime: timedelta
) -> str | None:
    """Return a new token for the user, or ``None`` when there is no such user."""
    token = new_token()
    row = await _first(db, ISSUE_SQL, user_id, purpose, uuid7(), hash_token(token), lifetime)
    return None if row is None else token


async def issue_by_email(
    db: AsyncSession, email: str, purpose: str, lifetime: timedelta
) -> tuple[str, uuid.UUID] | None:
    """Return a new token and its user for the active user with this email, else ``None``.

    Both answers cost the same: one statement, a token made either way, and a transaction
    that will write at its COMMIT.
    """
    token = new_token()
    row = await _first(db, ISSUE_BY_EMAIL_SQL, email, purpose, uuid7(), hash_token(token), lifetime)
    user_id: uuid.UUID | None = None if row is None else row["user_id"]
    return None if user_id is None else (token, user_id)


async def holder(db: AsyncSession, token: str, purpose: str) -> uuid.UUID | None:
    """Return the user a live token of this purpose was issued to, without spending it."""
    if not is_well_formed(token):
        return None
    row = await _first(db, FIND_SQL, hash_token(token), purpose)
    return None if row is None else row["user_id"]


async def spend(db: AsyncSession, token: str, purpose: str) -> uuid.UUID | None:
    """Spend a live token of this purpose; return its user, or ``None`` (of two, one wins)."""
    if not is_well_formed(token):
        return None
    row = await _first(db, SPEND_SQL, hash_token(token), purpose)
    return None if row is None else row["user_id"]


async def void(db: AsyncSession, user_id: uuid.UUID, *purposes: str) -> None:
    """Void the user's unused tokens of these purposes."""
    connection = await db.connection()
    await connection.exec_driver_sql(VOID_SQL, (user_id, list(purposes)))


async def purge_expired(db: AsyncSession, *, batch_size: int, max_batches: int | None) -> int:
    """Delete spent and expired tokens in batches; return how many."""
    connection = await db.connection()
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        count = (await connection.exec_driver_sql(PURGE_SQL, (batch_size,))).rowcount
        deleted += count
        batches += 1
        if count < batch_size:
            break
    return deleted
