"""``DATABASE_SLOW_STATEMENT_MS``: a WARNING for each statement slower than that.

The record names the app_db call the statement served (or the coalesced batch), its duration,
and the statement's first words with every quoted literal masked; never a parameter.
Statements sent through SQLAlchemy are timed by its cursor events; those app_db sends to
asyncpg directly are timed where it sends them (``app_db.fastpath``).
"""

import logging
import re
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.observe import spans

SLOW_MS = "app_db_slow_statement_ms"
"""The engine execution option that ``create_engine`` sets from the setting (absent: off)."""
SHOWN = 120
"""Characters of the statement the record shows."""
logger = logging.getLogger("app_db.slow")
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def watch(engine: AsyncEngine) -> None:
    """Time every statement ``engine`` sends through SQLAlchemy, and log the slow ones."""
    spans.naming_calls = True
    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", _started)
    event.listen(sync, "after_cursor_execute", _finished)


def threshold(options: Any) -> float | None:
    """Return the threshold in seconds from an engine's or connection's options, if set."""
    value = options.get(SLOW_MS)
    return None if value is None else value / 1000


def report(seconds: float, limit: float, statement: str) -> None:
    """Log a statement that took ``seconds``, when that is over ``limit``."""
    if seconds < limit:
        return
    call = spans.current_call.get() or "outside any app_db call"
    logger.warning("slow statement: %.0f ms in %s: %s", seconds * 1000, call, _shown(statement))


def _shown(statement: str) -> str:
    text = " ".join(_LITERAL.sub("'?'", statement).split())
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def _started(conn: Any, _cursor: Any, _statement: str, *_: Any) -> None:
    conn.info.setdefault("app_db_started", []).append(time.perf_counter())


def _finished(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    started = conn.info["app_db_started"].pop()
    limit = threshold(conn.get_execution_options())
    if limit is not None:
        report(time.perf_counter() - started, limit, statement)
