"""Fencing: refuse a server on an older timeline of a database system than one already seen.

Each new connection asks the server for its system identifier (``pg_control_system()``) and its
timeline. A promoted standby starts a new timeline, so once an engine has seen timeline 2 of a
system, a server still on timeline 1 of it is a former primary: a split brain. It is refused
with ``FencedServerError`` and one ERROR record. The functions are executable by any role
(PostgreSQL grants them to PUBLIC); where they are not, fencing is off, with one WARNING.

A primary's timeline is read from the name of its current WAL file, which changes the moment a
standby is promoted; ``pg_control_checkpoint()`` reports the new timeline only after the next
checkpoint. A standby's checkpoint timeline is a lower bound of its own: it counts as seen, but
never refuses the standby, which cannot take writes anyway.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app_db.errors import FencedServerError

log = logging.getLogger(__name__)

CONTROL_SQL = """
    SELECT s.system_identifier::text AS system, pg_is_in_recovery() AS standby,
           c.timeline_id AS checkpoint_timeline,
           CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END
             AS wal_file
    FROM pg_control_system() AS s, pg_control_checkpoint() AS c
"""


@dataclass
class Fence:
    """The newest timeline seen of each database system, shared by a primary and its replica."""

    newest: dict[str, int] = field(default_factory=dict)
    refused: set[tuple[str, str, int]] = field(default_factory=set)
    off: bool = False

    async def admit(self, connection: Any, where: str) -> None:
        """Raise ``FencedServerError`` when the server behind ``connection`` must be refused."""
        if self.off:
            return
        try:
            row = await connection.fetchrow(CONTROL_SQL)
        except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedFunctionError) as exc:
            self.off = True
            log.warning("fencing is off: the server refused pg_control_system() (%s)", exc)
            return
        system, timeline = row["system"], int(row["checkpoint_timeline"])
        if not row["standby"]:
            timeline = max(timeline, int(row["wal_file"][:8], 16))
        newest = self.newest.get(system, 0)
        if row["standby"] or timeline >= newest:
            self.newest[system] = max(newest, timeline)
            return
        if (where, system, timeline) not in self.refused:
            self.refused.add((where, system, timeline))
            log.error(
                "refused %s: it is on timeline %d of database system %s, and timeline %d of it "
                "was seen before (a former primary: fence it, e.g. with pg_rewind)",
                where,
                timeline,
                system,
                newest,
            )
        raise FencedServerError(
            f"refused {where}: timeline {timeline} of database system {system} is older than "
            f"timeline {newest}, seen before"
        )
