"""Where a transaction's reads go: the primary on request, or the replica once it has replayed a
position the client carries (read-your-writes across requests).

``transaction(maker, primary=True)`` reads from the primary. ``transaction(maker, after=p)``
reads from the replica only if it has already replayed position ``p``, else from the primary;
it never waits. ``await commit_position(db)`` after a transaction that committed returns the
position to carry: an opaque string of at most 16 hex digits (the primary's WAL position), safe
as it is in a cookie or a header. A string that is not one reads from the primary.
"""

import re

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.cluster import wal
from app_db.cluster.replica import REPLICAS, Replica, replica_of
from app_db.errors import typed_error
from app_db.lazy_session import bind_of, info_of

AFTER = "app_db.read_after"
"""``session.info`` key: the position the session's replica reads must see."""
COMMITTED = "app_db.committed_on"
"""``session.info`` key: the engine a transaction committed on (set only with a replica)."""


_TOKEN = re.compile(r"[0-9a-f]{1,16}")


def token(position: int) -> str:
    """Return the string a client carries for a WAL position."""
    return f"{position:x}"


def position_of(carried: str) -> int:
    """Return the WAL position a carried string stands for; one past all for anything else."""
    return int(carried, 16) if _TOKEN.fullmatch(carried) else wal.BEYOND_ANY


def route(db: AsyncSession, *, primary: bool, after: str | None) -> None:
    """Send the session's reads to the primary, or to a replica that has replayed ``after``.

    Without a replica of the session's engine, every read goes to the primary already: the
    session is left as it is (and unbuilt, see ``app_db.lazy_session``).
    """
    bind = bind_of(db)
    if not isinstance(bind, AsyncEngine) or replica_of(bind) is None:
        return
    if primary:
        db.info[AFTER] = wal.BEYOND_ANY
    elif after is not None:
        db.info[AFTER] = position_of(after)


def replica_for(db: AsyncSession, primary: AsyncEngine) -> Replica | None:
    """Return the replica that a read of ``db`` may go to now, or ``None`` for the primary."""
    replica = replica_of(primary)
    if replica is None:
        return None
    after = info_of(db).get(AFTER)
    return replica if replica.serves(primary, after) else None


def committed(db: AsyncSession) -> None:
    """Note that ``transaction()`` committed the session's transaction (only with a replica)."""
    bind = db.bind
    if REPLICAS and isinstance(bind, AsyncEngine) and replica_of(bind) is not None:
        db.info[COMMITTED] = bind


async def commit_position(db: AsyncSession) -> str | None:
    """Return the position that a later ``transaction(maker, after=...)`` must read past.

    Call it after the ``transaction()`` block that committed. ``None`` when the block sent no
    COMMIT or the engine has no replica: there is nothing to carry. It costs one round trip to
    the primary. If the primary cannot answer it, the position returned is one no replica
    reaches, so the client reads from the primary until it carries another.
    """
    engine = info_of(db).get(COMMITTED)
    if not isinstance(engine, AsyncEngine):
        return None
    try:
        position = await wal.read(engine, wal.PRIMARY_POSITION_SQL, None)
    except Exception as exc:
        if typed_error(exc) is None:
            raise
        position = None
    return token(wal.BEYOND_ANY - 1 if position is None else position)
