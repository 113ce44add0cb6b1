"""Login sessions: opaque tokens whose SHA-256 alone is stored.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import ipaddress
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import cache

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, and_, delete, exists, func, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, fastpath, session_lookups
from app_db.errors import InvalidInputError, typed_errors
from app_db.models import Session, User
from app_db.models.session import USER_AGENT_MAX_LENGTH, IPAddress
from app_db.models.types import uuid7
from app_db.observe.spans import traced
from app_db.settings import SessionSettings, load_session_settings
from app_db.tokens import hash_token, is_well_formed, new_token
from app_db.validation import validated_value

DEFAULT_PURGE_BATCH = 1000

_IP = TypeAdapter(IPAddress | None)


@cache
def default_settings() -> SessionSettings:
    """Return the session settings from the environment, read once."""
    return load_session_settings()


def _live(token_hash: bytes) -> ColumnElement[bool]:
    return and_(
        col(Session.token_hash) == token_hash,
        col(Session.revoked_at).is_(None),
        col(Session.expires_at) > func.now(),
    )


@traced
@typed_errors
async def issue(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    ttl: timedelta | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    settings: SessionSettings | None = None,
) -> tuple[str, Session]:
    """Start a session for the user; return the token (shown once) and the stored row.

    The session lasts ``ttl`` (default: the idle timeout), capped by the absolute lifetime.
    Raises ``NotFoundError`` when no such user exists.
    """
    policy = settings or default_settings()
    lifetime = policy.idle_timeout if ttl is None else ttl
    if lifetime <= timedelta(0):
        raise InvalidInputError("must be positive", field="ttl")
    token = new_token()
    address = validated_value(_IP, ip, field="ip")
    connection = await db.connection()
    result = await connection.exec_driver_sql(
        ISSUE_SQL,
        (
            uuid7(),
            user_id,
            hash_token(token),
            None if address is None else ipaddress.ip_address(address),
            _clean_user_agent(user_agent),
            min(lifetime, policy.max_lifetime),
        ),
    )
    session = fastpath.load_values(db, Session, _session_values(result.mappings().one()))
    db.add(session)  # persistent already: joins the session's identity map, no INSERT
    return token, session


_SESSION_NAMES = session_lookups.SESSION_NAMES
_USER_COLUMNS = tuple((name, f"u_{name}") for name in session_lookups.USER_NAMES)
ISSUE_SQL = f"""
    INSERT INTO sessions (id, user_id, token_hash, ip, user_agent, expires_at)
    VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
    RETURNING {", ".join(_SESSION_NAMES)}
"""  # noqa: S608 - built from the model's column names only


def _session_values(row: fastpath.Row) -> dict[str, object]:
    values = {name: row[name] for name in _SESSION_NAMES}
    if values["ip"] is not None:
        values["ip"] = str(values["ip"])
    return values


@traced
@typed_errors
async def validate(
    db: AsyncSession, token: str, *, settings: SessionSettings | None = None
) -> tuple[Session, User] | None:
    """Return the live session and its active user for a token, else ``None``, in one query.

    ``None`` covers unknown, expired and revoked sessions and inactive users. A valid session's
    ``last_seen_at`` and sliding expiry are renewed at most once per touch interval, by the
    same statement. As the first statement of a transaction it runs without ``BEGIN``, so a
    touch is then committed at once, whatever the request does next (see
    ``app_db.fastpath``), and concurrent calls share one statement (see ``app_db.coalesce``).
    It reads the primary even with a read replica, so a revocation, a deactivation or an
    expiry takes effect at once, whatever the replica's lag.
    """
    if not is_well_formed(token):
        return None
    policy = settings or default_settings()
    token_hash = hash_token(token)
    lookups = session_lookups.for_policy(
        policy.idle_timeout, policy.max_lifetime, policy.touch_interval
    )
    row = await coalesce.fetchrow(db, lookups.validate, token_hash)
    if row is None:
        return None
    user_values = {name: row[prefixed] for name, prefixed in _USER_COLUMNS}
    return (
        fastpath.load_values(db, Session, _session_values(row)),
        fastpath.load_values(db, User, user_values),
    )


@traced
@typed_errors
async def rotate(
    db: AsyncSession, token: str, *, settings: SessionSettings | None = None
) -> tuple[str, Session] | None:
    """Revoke a live session and issue a new token for its user (on login or privilege change).

    Return ``None`` when the token is not live. Of concurrent rotations of one token, one wins.
    """
    if not is_well_formed(token):
        return None
    active_user = exists().where(col(User.id) == col(Session.user_id), col(User.is_active))
    result = await db.exec(
        update(Session)
        .where(_live(hash_token(token)), active_user)
        .values(revoked_at=func.now())
        .returning(Session)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    old = result.scalars().first()
    if old is None:
        return None
    return await issue(db, old.user_id, ip=old.ip, user_agent=old.user_agent, settings=settings)


@traced
@typed_errors
async def revoke(db: AsyncSession, token: str) -> bool:
    """Revoke the live session of a token; return whether there was one."""
    if not is_well_formed(token):
        return False
    result = await db.exec(
        update(Session)
        .where(_live(hash_token(token)))
        .values(revoked_at=func.now())
        .returning(Session)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.scalars().first() is not None


@traced
@typed_errors
async def revoke_all(
    db: AsyncSession, user_id: uuid.UUID, *, except_session_id: uuid.UUID | None = None
) -> int:
    """Revoke every live session of a user, but the one kept; return how many were revoked."""
    conditions = [
        col(Session.user_id) == user_id,
        col(Session.revoked_at).is_(None),
        col(Session.expires_at) > func.now(),
    ]
    if except_session_id is not None:
        conditions.append(col(Session.id) != except_session_id)
    result = await db.exec(
        update(Session)
        .where(*conditions)
        .values(revoked_at=func.now())
        .returning(Session)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return len(result.scalars().all())


@traced
@typed_errors
async def list_for_user(
    db: AsyncSession, user_id: uuid.UUID, *, include_ended: bool = False
) -> Sequence[Session]:
    """Return the user's live sessions, newest first (with ``include_ended``, all of them)."""
    statement = select(Session).where(col(Session.user_id) == user_id)
    if not include_ended:
        statement = statement.where(
            col(Session.revoked_at).is_(None), col(Session.expires_at) > func.now()
        )
    result = await db.exec(statement.order_by(col(Session.created_at).desc(), col(Session.id)))
    return result.all()


@traced
@typed_errors
async def purge_expired(
    db: AsyncSession, *, batch_size: int = DEFAULT_PURGE_BATCH, max_batches: int | None = None
) -> int:
    """Delete expired sessions in batches; return how many were deleted.

    Each batch locks at most ``batch_size`` rows and skips rows that requests hold locked, so
    it runs beside live traffic. Revoked sessions stay until they expire, as an audit trail.
    For a large backlog, call it with ``max_batches=1`` and commit between calls.
    """
    if batch_size < 1:
        raise InvalidInputError("must be at least 1", field="batch_size")
    # MATERIALIZED: the batch is chosen once. As a plain subquery the planner may rescan it
    # (a nested loop), and each rescan of ``LIMIT ... SKIP LOCKED`` can pick other rows, so one
    # statement deleted more than ``batch_size`` rows.
    batch = (
        sa_select(col(Session.id))
        .where(col(Session.expires_at) <= func.now())
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    statement = delete(Session).where(col(Session.id).in_(sa_select(batch.c.id)))
    connection = await db.connection()
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        count = (await connection.execute(statement)).rowcount
        deleted += count
        batches += 1
        if count < batch_size:
            break
    return deleted


def _clean_user_agent(user_agent: str | None) -> str | None:
    if user_agent is None:
        return None
    cleaned = user_agent.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:USER_AGENT_MAX_LENGTH] or None
