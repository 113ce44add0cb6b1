"""Closing a connection when the task that holds it is being cancelled: briefly, never hanging.

A caller that ran out of time (a read timeout, a request's deadline) may leave its connection
mid-statement. Closing it gracefully sends the server a cancel request on a new connection
first, so that a statement on a healthy server stops at once and frees its locks. A server that
hangs (a frozen standby, a host that stopped) never answers that request, and asyncpg 0.30 waits
for it without a limit: the close, and so the read, outlived the timeout by as long as the
server hung. Here the graceful close gets ``GRACE`` seconds; then the socket is closed.
"""

import asyncio
from typing import Any

GRACE = 1.0
"""Seconds a cancelled task's connection has to close gracefully before its socket is closed."""


def cancelling() -> bool:
    """Return whether the running task (if any) is being cancelled."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous close
        return False
    return task is not None and task.cancelling() > 0


def close_if_cancelling(connection: Any) -> bool:
    """Close a DBAPI connection within ``GRACE`` if the running task is being cancelled.

    Call it where SQLAlchemy would close or terminate the connection, in its greenlet. Return
    whether it closed the connection; SQLAlchemy's own close is then a no-op.
    """
    if not cancelling():
        return False
    driver = getattr(connection, "driver_connection", None)
    if driver is None:
        return False
    try:
        connection.run_async(lambda found: asyncio.wait_for(found.close(), GRACE))
    except (Exception, asyncio.CancelledError):  # no answer in time, or gone already
        driver.terminate()
    return True
