"""Run a real PgBouncer (Debian's package) in transaction mode in front of a test database."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

SERVER_POOL = 5


def binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> str | None:
    """PgBouncer refuses to run as root: pick the user that may reach the server's socket."""
    if os.geteuid() != 0:
        return None
    for name in ("embedded_postgres", "postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user to run PgBouncer as")


@contextmanager
def pgbouncer(database: URL) -> Iterator[URL]:
    """Start PgBouncer on a free loopback port for ``database``; yield the URL through it."""
    executable = binary()
    assert executable is not None
    host = database.query.get("host") or database.host or "127.0.0.1"
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="app_db_pgbouncer_"))
    folder.chmod(0o755)
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"appdb = host={host} port={database.port or 5432} dbname={database.database}"
        f" user={database.username or 'postgres'}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 500\nserver_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    config.chmod(0o644)
    command = [executable, *(["-u", user] if (user := _run_as()) else []), str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"pgbouncer did not start:\n{output}") from None
                time.sleep(0.05)
        yield URL.create(
            "postgresql", username="postgres", host="127.0.0.1", port=port, database="appdb"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
