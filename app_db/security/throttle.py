"""Failed attempts counted in PostgreSQL, so that every process and node shares the count.

An attempt is counted against two counters: the account at the client's network (an IPv4
``/24`` or an IPv6 ``/64``), and the network for all accounts together. It is counted before
the password is checked, in one statement that refuses it instead while either counter's delay
runs, so a burst of concurrent guesses cannot slip past while hashing runs, and a refusal
costs one round trip and no hash. A success refunds it: the account's counter for that network
starts over, and the network's counter gives the attempt back. The owner of an account is
never locked out by someone else's guesses from another network.

Past its free failures, a counter makes the next attempt wait ``base_delay``, doubling with
each further failure up to ``max_delay``. Counters are written in a transaction of their own,
on a pooled connection, so a caller that rolls back (a handler that raises on a failed login)
still counts the failure. Counter keys are SHA-256 digests: the table holds no email and no
address.
"""

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import fastpath
from app_db.errors import InvalidInputError, ThrottledError
from app_db.observe.spans import public
from app_db.settings import ThrottleSettings, load_throttle_settings

DEFAULT_PURGE_BATCH = 1000
commits = 0
"""How many statements of this process wrote counters (the test plugin deletes them)."""


@cache
def default_settings() -> ThrottleSettings:
    """Return the throttle settings from the environment, read once."""
    return load_throttle_settings()


def network_of(address: str | None, settings: ThrottleSettings) -> str | None:
    """Return the network a client address belongs to, as text; ``None`` for no address.

    An IPv4 address mapped into IPv6 (``::ffff:192.0.2.1``) counts as the IPv4 address.
    """
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address.strip() if isinstance(address, str) else address)
    except ValueError:
        raise InvalidInputError("not an IP address", field="ip") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = settings.ipv4_prefix if ip.version == 4 else settings.ipv6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True, slots=True)
class Attempt:
    """The counters of one attempt: the account at a network, and the network (if known)."""

    account: bytes
    network: bytes | None


def attempt(action: str, account: str, network: str | None) -> Attempt:
    """Return the counters of an ``action`` on an ``account`` (say, its email) from a network."""
    return Attempt(
        account=_key(action, "account", account, network or "-"),
        network=None if network is None else _key(action, "network", network),
    )


def _key(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()


def _failures() -> str:
    """The row's failures once this attempt counts: 1 again after a quiet ``window`` ($5)."""
    return "CASE WHEN t.last_attempt_at <= now() - $5::interval THEN 1 ELSE t.failures + 1 END"


def _delay(failures: str, free: str) -> str:
    """The wait after ``failures`` failures: none while free, then $3 doubling up to $4."""
    return (
        f"CASE WHEN {failures} <= {free} THEN interval '0' "
        f"ELSE least($3::interval * power(2, least({failures} - {free} - 1, 30)), $4::interval) "
        "END"
    )


_FREE_OF_ROW = "(SELECT a.free FROM attempt AS a WHERE a.key = t.key)"
ADMIT_SQL = f"""
WITH attempt(key, free) AS (SELECT * FROM unnest($1::bytea[], $2::int[])),
blocked AS (
    SELECT max(t.blocked_until) AS until
    FROM throttles AS t JOIN attempt AS a ON a.key = t.key
    WHERE t.blocked_until > now()
),
counted AS (
    INSERT INTO throttles AS t (key, failures, last_attempt_at, blocked_until)
    SELECT a.key, 1, now(), now() + {_delay("1", "a.free")}
    FROM attempt AS a
    WHERE (SELECT until FROM blocked) IS NULL
    ON CONFLICT (key) DO UPDATE SET
        failures = {_failures()},
        last_attempt_at = now(),
        blocked_until = now() + {_delay(_failures(), _FREE_OF_ROW)}
    WHERE t.blocked_until <= now()
    RETURNING t.key
)
SELECT
    extract(epoch FROM (SELECT until FROM blocked) - clock_timestamp()) AS wait,
    (SELECT count(*) FROM counted) AS counted
"""  # noqa: S608 - built from constants only
"""Refuse the attempt while a counter's delay runs (``wait`` in seconds), else count it.

The wait is measured from the clock, not from ``now()`` (the transaction's start): a delay
that a later-started attempt set must not read as longer than it is.

``$1`` the keys, ``$2`` their free failures, ``$3`` the base delay, ``$4`` the longest,
``$5`` the window.
"""

WAIT_SQL = """
SELECT extract(epoch FROM max(blocked_until) - clock_timestamp()) AS wait
FROM throttles WHERE key = ANY($1::bytea[]) AND blocked_until > now()
"""

REFUND_SQL = """
WITH reset AS (DELETE FROM throttles WHERE key = $1)
UPDATE throttles SET
    failures = greatest(failures - 1, 0),
    blocked_until = CASE WHEN failures - 1 <= $3 THEN least(blocked_until, now())
                         ELSE blocked_until END
WHERE key = $2
"""
"""Start the account's counter ``$1`` over; give the attempt back to the network's ``$2``
(whose free failures are ``$3``): below them, it waits no more."""


async def admit(db: AsyncSession, counted: Attempt, settings: ThrottleSettings) -> None:
    """Count the attempt, or raise ``ThrottledError`` while one of its counters makes it wait."""
    keys = [counted.account]
    free = [settings.account_free_failures]
    if counted.network is not None:
        keys.append(counted.network)
        free.append(settings.network_free_failures)
    global commits  # noqa: PLW0603 - a count for the test plugin
    commits += 1
    engine = fastpath.engine_of(db)
    delays = (settings.base_delay, settings.max_delay, settings.window)
    row = (await fastpath.run_alone(engine, ADMIT_SQL, keys, free, *delays))[0]
    wait = row["wait"]
    if wait is None and row["counted"] < len(keys):
        # A concurrent attempt started a delay between this statement's check and its count.
        wait = (await fastpath.run_alone(engine, WAIT_SQL, keys))[0]["wait"]
        wait = settings.base_delay.total_seconds() if wait is None else wait
    if wait is not None:
        raise ThrottledError(max(1, math.ceil(float(wait))))


async def succeeded(db: AsyncSession, counted: Attempt, settings: ThrottleSettings) -> None:
    """Refund a counted attempt that succeeded."""
    await fastpath.run_alone(
        fastpath.engine_of(db),
        REFUND_SQL,
        counted.account,
        counted.network,
        settings.network_free_failures,
    )


PURGE_SQL = """
WITH batch AS MATERIALIZED (
    SELECT key FROM throttles WHERE last_attempt_at <= now() - $1::interval
    ORDER BY last_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM throttles WHERE key IN (SELECT key FROM batch)
"""


@public
async def purge_expired(
    db: AsyncSession,
    *,
    batch_size: int = DEFAULT_PURGE_BATCH,
    max_batches: int | None = None,
    window: timedelta | None = None,
) -> int:
    """Delete counters with no attempt for ``THROTTLE_WINDOW``, in batches; return how many.

    It runs in the caller's transaction, as ``sessions.purge_expired`` does.
    """
    if batch_size < 1:
        raise InvalidInputError("must be at least 1", field="batch_size")
    quiet = window if window is not None else default_settings().window
    connection = await db.connection()
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        result = await connection.exec_driver_sql(PURGE_SQL, (quiet, batch_size))
        count = result.rowcount
        deleted += count
        batches += 1
        if count < batch_size:
            break
    return deleted
