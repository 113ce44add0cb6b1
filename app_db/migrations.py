"""Run the Alembic migration from code: the same revision and ``env.py`` as the ``alembic`` CLI."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from app_db.settings import Settings

_PACKAGE_DIR = Path(__file__).resolve().parent


def script_location() -> Path:
    """Return the folder that holds ``env.py`` and ``versions/``: in the wheel, else the repo."""
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("app_db's alembic folder is missing from this installation")


def alembic_config(settings: Settings | None = None) -> Config:
    """Return an Alembic ``Config`` for app_db's migration, optionally bound to ``settings``."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logger"] = False
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def head_revision() -> str:
    """Return the revision id that ``upgrade head`` reaches."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("app_db's alembic folder holds no revision")
    return head


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database named by ``settings``; call it outside a running event loop."""
    command.upgrade(alembic_config(settings), revision)


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade through an open sync connection, e.g. from ``AsyncConnection.run_sync``."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
