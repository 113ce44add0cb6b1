"""The statements that find a login session by token hash, alone or for a batch of hashes.

``validate`` finds the live session and its active user, and touches the session when its
touch is due (sliding expiry and ``last_seen_at``), in one statement, on the primary (a
replica could miss a revocation). It comes as a ``coalesce.Lookup`` per session policy, so
concurrent calls share one statement.
"""

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from app_db import instances
from app_db.coalesce import Lookup
from app_db.models import Session, User

SESSION_NAMES = instances.column_names(Session)
USER_NAMES = instances.column_names(User)
_TOUCHED = ("expires_at", "last_seen_at")
_FOUND = ", ".join(
    [f"s.{name}" for name in SESSION_NAMES] + [f"u.{name} AS u_{name}" for name in USER_NAMES]
)
_ONE = "(SELECT $1::bytea AS key, 1::bigint AS n) AS q"
_MANY = "unnest($1::bytea[]) WITH ORDINALITY AS q(key, n)"
_LIVE = """
    JOIN sessions AS s ON s.token_hash = q.key
    JOIN users AS u ON u.id = s.user_id
    WHERE s.revoked_at IS NULL AND s.expires_at > now() AND u.is_active
"""


def _validate_sql(keys: str) -> str:
    """Find the live sessions of the keys, touch those due, and return each with its user.

    The touch locks the due rows with ``SKIP LOCKED``: a row that another statement holds
    locked is being touched (or changed) right now, so this one neither waits for it nor
    touches it twice, and concurrent batches cannot deadlock on each other's rows.
    """
    result = ", ".join(
        [
            f"COALESCE(touched.{name}, found.{name}) AS {name}"
            if name in _TOUCHED
            else f"found.{name}"
            for name in SESSION_NAMES
        ]
        + [f"found.u_{name}" for name in USER_NAMES]
    )
    return f"""
    WITH found AS (
        SELECT q.n, {_FOUND} FROM {keys} {_LIVE}
    ), due AS (
        SELECT t.id FROM sessions AS t
        WHERE t.id IN (SELECT id FROM found WHERE last_seen_at <= now() - $4::interval)
          AND t.last_seen_at <= now() - $4::interval
        FOR UPDATE SKIP LOCKED
    ), touched AS (
        UPDATE sessions AS t
        SET last_seen_at = now(),
            expires_at = LEAST(now() + $2::interval, t.created_at + $3::interval)
        FROM due
        WHERE t.id = due.id
        RETURNING t.id, t.last_seen_at, t.expires_at
    )
    SELECT found.n, {result}
    FROM found LEFT JOIN touched ON touched.id = found.id
    """  # noqa: S608 - built from the model's column names only


VALIDATE_SQL = _validate_sql(_ONE)
"""``$1`` the token hash, ``$2`` the idle timeout, ``$3`` the absolute lifetime, ``$4`` the
touch interval."""
VALIDATE_BATCH_SQL = _validate_sql(_MANY)


@dataclass(frozen=True)
class SessionLookups:
    """The lookups of one session policy."""

    validate: Lookup


@cache
def for_policy(idle: timedelta, lifetime: timedelta, touch: timedelta) -> SessionLookups:
    """Return the lookups for a policy; each policy batches apart from the others."""
    policy = f"{idle}/{lifetime}/{touch}"
    return SessionLookups(
        validate=Lookup(
            f"sessions.validate {policy}", VALIDATE_SQL, VALIDATE_BATCH_SQL, (idle, lifetime, touch)
        ),
    )
