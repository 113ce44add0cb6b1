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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, driver_transaction, fastpath, instances, session_lookups
from app_db.errors import InvalidInputError
from app_db.models import Session, User
from app_db.models.session import USER_AGENT_MAX_LENGTH, IPAddress
from app_db.models.types import uuid7
from app_db.observe.spans import public
from app_db.rows import Row
from app_db.security import events
from app_db.security.events import Client, current_client
from app_db.security.tokens import hash_token, is_well_formed, new_token
from app_db.settings import MAX_SESSIONS_PER_USER, SessionSettings, load_session_settings
from app_db.validation import checked_uuid, validated_value

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


@public
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
    ``ip`` and ``user_agent`` default to those of the enclosing ``security.client`` block.
    Beyond ``SESSION_MAX_PER_USER`` live sessions, the same statement revokes the oldest
    (concurrent logins of one user may each keep one more until the next). Each cap is a
    statement of its own in the driver's cache (100 a connection): pass ``settings`` with a
    handful of caps, not one per tenant among hundreds. Raises
    ``NotFoundError`` when no such user exists. The stored row joins the session's identity
    map when SQLAlchemy's transaction is under way; when the session holds its transaction on
    the driver (``app_db.driver_transaction``), it comes back detached, as the fast path's
    reads do, so that the INSERT needs none of SQLAlchemy's machinery: ``db.add`` it to change
    it in this transaction.
    """
    policy = settings or default_settings()
    lifetime = policy.idle_timeout if ttl is None else ttl
    if lifetime <= timedelta(0):
        raise InvalidInputError("must be positive", field="ttl")
    user_id = checked_uuid(user_id, field="user_id")
    asking = current_client()
    token = new_token()
    address = validated_value(_IP, asking.address if ip is None else ip, field="ip")
    agent = _clean_user_agent(asking.user_agent if user_agent is None else user_agent)
    values: tuple[object, ...] = (
        uuid7(),
        user_id,
        hash_token(token),
        None if address is None else ipaddress.ip_address(address),
        agent,
        min(lifetime, policy.max_lifetime),
    )
    capped = policy.max_per_user > 0
    if fastpath.has_pending(db):
        await db.flush()  # a user added in this transaction must be there for the foreign key
    rows = await fastpath.fetch_in_transaction(
        db, issue_capped_sql(policy.max_per_user - 1) if capped else ISSUE_SQL, *values
    )
    row = rows[0]
    session = fastpath.load_values(db, Session, _session_values(row))
    if not driver_transaction.held(db):  # SQLAlchemy's transaction: join its identity map
        db.add(session)  # persistent already: no INSERT
    client = Client(address, agent)
    events.record(events.SESSION_ISSUED, user_id=user_id, session_id=session.id, client=client)
    if capped and row["revoked"]:
        events.record(
            events.SESSION_REVOKED, user_id=user_id, reason="session_cap", count=row["revoked"]
        )
    return token, session


_SESSION_NAMES = session_lookups.SESSION_NAMES
_USER_COLUMNS = tuple((name, f"u_{name}") for name in session_lookups.USER_NAMES)
_INSERT = """
    INSERT INTO sessions (id, user_id, token_hash, ip, user_agent, expires_at)
    VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
"""
ISSUE_SQL = f"{_INSERT} RETURNING {', '.join(_SESSION_NAMES)}"
_ISSUE_CAPPED = f"""
WITH issued AS ({_INSERT} RETURNING {", ".join(_SESSION_NAMES)}),
over_cap AS (
    UPDATE sessions SET revoked_at = now()
    WHERE id IN (
        SELECT id FROM sessions
        WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > now()
        ORDER BY created_at DESC, id DESC
        OFFSET {{others}}
    )
    RETURNING id
)
SELECT issued.*, (SELECT count(*) FROM over_cap) AS revoked FROM issued
"""  # noqa: S608 - built from the model's column names only


@cache
def issue_capped_sql(others: int) -> str:
    """Return the statement that issues a session (``$1``..``$6`` as ``ISSUE_SQL``) and revokes
    the user's live sessions beyond the newest ``others`` (it does not see the row it inserts).

    ``others`` is written into the statement, not sent as a parameter: with ``OFFSET $7``,
    PostgreSQL planned the statement again at every call once users held sessions near the
    cap (the generic plan looks costlier than each custom one), about a sixth of the server's
    CPU for a login. Each cap is a statement of its own on every connection.
    """
    if type(others) is not int or not 0 <= others < MAX_SESSIONS_PER_USER:  # no subclass either
        raise InvalidInputError(
            f"must be between 1 and {MAX_SESSIONS_PER_USER}", field="max_per_user"
        )
    return _ISSUE_CAPPED.format(others=others)


def _session_values(row: Row) -> dict[str, object]:
    values = {name: row[name] for name in _SESSION_NAMES}
    if values["ip"] is not None:
        values["ip"] = str(values["ip"])
    return values


@public
async def validate(
    db: AsyncSession | AsyncEngine, token: str, *, settings: SessionSettings | None = None
) -> tuple[Session, User] | None:
    """Return the live session and its active user for a token, else ``None``, in one query.

    ``None`` covers unknown, expired and revoked sessions and inactive users. A valid session's
    ``last_seen_at`` and sliding expiry are renewed at most once per touch interval, by the
    same statement. As the first statement of a transaction it runs without ``BEGIN``, so a
    touch is then committed at once, whatever the request does next (see
    ``app_db.fastpath``), and concurrent calls share one statement (see ``app_db.coalesce``).
    It reads the primary even with a read replica, so a revocation, a deactivation or an
    expiry takes effect at once, whatever the replica's lag.

    Given an engine instead of a session (a request that only needs to know who is logged
    in), it borrows a pooled connection for that one statement, as a session's first read
    would, and builds no session: the instances are detached (``db.add`` them to a session
    to change them).
    """
    if not is_well_formed(token):
        return None
    policy = settings or default_settings()
    token_hash = hash_token(token)
    lookups = session_lookups.for_policy(
        policy.idle_timeout, policy.max_lifetime, policy.touch_interval
    )
    if isinstance(db, AsyncEngine):
        row = await coalesce.get_borrowed(db, lookups.validate, token_hash)
    else:
        row = await coalesce.fetchrow(db, lookups.validate, token_hash)
    if row is None:
        return None
    session_values = _session_values(row)
    user_values = {name: row[prefixed] for name, prefixed in _USER_COLUMNS}
    if isinstance(db, AsyncEngine):
        return instances.detached(Session, session_values), instances.detached(User, user_values)
    return (
        fastpath.load_values(db, Session, session_values),
        fastpath.load_values(db, User, user_values),
    )


@public
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
    new_token_, new = await issue(
        db, old.user_id, ip=old.ip, user_agent=old.user_agent, settings=settings
    )
    events.record(events.SESSION_ROTATED, user_id=old.user_id, session_id=old.id)
    return new_token_, new


@public
async def revoke(db: AsyncSession, token: str) -> bool:
    """Revoke the live session of a token (a logout); return whether there was one."""
    if not is_well_formed(token):
        return False
    return await _revoke(db, _live(hash_token(token)), reason="logout") > 0


@public
async def revoke_by_id(db: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """Revoke one live session of the user, by its id (sign a device out from a list of
    ``list_for_user``); return whether the user had such a live session."""
    conditions = (
        col(Session.id) == checked_uuid(session_id, field="session_id"),
        col(Session.user_id) == checked_uuid(user_id, field="user_id"),
        col(Session.revoked_at).is_(None),
        col(Session.expires_at) > func.now(),
    )
    return await _revoke(db, and_(*conditions), reason="by_id") > 0


@public
async def revoke_all(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    except_session_id: uuid.UUID | None = None,
    reason: str = "all",
) -> int:
    """Revoke every live session of a user, but the one kept; return how many were revoked.

    ``reason`` goes into the security event (``password_changed``, say).
    """
    user_id = checked_uuid(user_id, field="user_id")
    conditions = [
        col(Session.user_id) == user_id,
        col(Session.revoked_at).is_(None),
        col(Session.expires_at) > func.now(),
    ]
    if except_session_id is not None:
        kept = checked_uuid(except_session_id, field="except_session_id")
        conditions.append(col(Session.id) != kept)
    return await _revoke(db, and_(*conditions), reason=reason, user_id=user_id)


async def _revoke(
    db: AsyncSession,
    condition: ColumnElement[bool],
    *,
    reason: str,
    user_id: uuid.UUID | None = None,
) -> int:
    """Revoke the sessions that match; record one event for one session, else one with a count."""
    result = await db.exec(
        update(Session)
        .where(condition)
        .values(revoked_at=func.now())
        .returning(Session)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    revoked = result.scalars().all()
    if len(revoked) == 1:
        only = revoked[0]
        events.record(
            events.SESSION_REVOKED, user_id=only.user_id, session_id=only.id, reason=reason
        )
    elif revoked:
        events.record(events.SESSION_REVOKED, user_id=user_id, reason=reason, count=len(revoked))
    return len(revoked)


@public
async def list_for_user(
    db: AsyncSession, user_id: uuid.UUID, *, include_ended: bool = False
) -> Sequence[Session]:
    """Return the user's live sessions, newest first (with ``include_ended``, all of them)."""
    user_id = checked_uuid(user_id, field="user_id")
    statement = select(Session).where(col(Session.user_id) == user_id)
    if not include_ended:
        statement = statement.where(
            col(Session.revoked_at).is_(None), col(Session.expires_at) > func.now()
        )
    result = await db.exec(statement.order_by(col(Session.created_at).desc(), col(Session.id)))
    return result.all()


@public
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
