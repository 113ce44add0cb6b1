"""Run Alembic from code: app_db's own revision, or a project's ``alembic.ini`` that adds its own.

Every function takes an optional ``config_file``: a project's ``alembic.ini``, written by
``app-db migrations init``. Without it, app_db's own revision is used. Upgrades go to every
head (``heads``): app_db's branch and the project's.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection

from app_db.settings import Settings

_PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_CONFIG = "alembic.ini"

ConfigFile = Path | str | None


def script_location() -> Path:
    """Return the folder that holds ``env.py`` and ``versions/``: in the wheel, else the repo."""
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("app_db's alembic folder is missing from this installation")


def version_location() -> str:
    """Return app_db's ``versions/`` folder as a project's ``version_locations`` names it.

    Installed from the wheel, that is the package resource ``app_db:_alembic/versions``,
    which stays right wherever the package is installed.
    """
    location = script_location()
    if location.parent == _PACKAGE_DIR:
        return f"app_db:{location.name}/versions"
    return str(location / "versions")


def project_config(folder: Path | None = None) -> Path | None:
    """Return the ``alembic.ini`` in ``folder`` (default: the current folder), if there is one."""
    candidate = (folder or Path.cwd()) / PROJECT_CONFIG
    return candidate if candidate.is_file() else None


def alembic_config(settings: Settings | None = None, *, config_file: ConfigFile = None) -> Config:
    """Return an Alembic ``Config``: the project's ``config_file``, else app_db's own."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"no Alembic configuration at {path}")
        config = Config(str(path))
    else:
        config = Config()
        config.set_main_option("script_location", str(script_location()))
        config.set_main_option("path_separator", "os")
    config.attributes["configure_logger"] = False
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def head_revisions(*, config_file: ConfigFile = None) -> tuple[str, ...]:
    """Return the revisions that ``upgrade heads`` reaches, sorted."""
    script = ScriptDirectory.from_config(alembic_config(config_file=config_file))
    return tuple(sorted(script.get_heads()))


def head_revision() -> str:
    """Return the revision of app_db's own schema (its branch's head)."""
    (head,) = head_revisions()
    return head


def upgrade(settings: Settings, revision: str = "heads", *, config_file: ConfigFile = None) -> None:
    """Upgrade the database named by ``settings``; call it outside a running event loop."""
    command.upgrade(alembic_config(settings, config_file=config_file), revision)


def upgrade_connection(
    connection: Connection, revision: str = "heads", *, config_file: ConfigFile = None
) -> None:
    """Upgrade through an open sync connection, e.g. from ``AsyncConnection.run_sync``."""
    config = alembic_config(config_file=config_file)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """Return the revisions recorded in the database's ``alembic_version`` table, sorted."""
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


State = Literal["at head", "behind", "ahead", "unknown revision"]


@dataclass(frozen=True)
class Status:
    """Where the database stands against the migrations that a configuration knows."""

    state: State
    current: tuple[str, ...]
    heads: tuple[str, ...]
    unknown: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Return whether code with these migrations may serve this database."""
        return self.state in ("at head", "ahead")


def status(current: Iterable[str], *, config_file: ConfigFile = None) -> Status:
    """Compare the database's revisions with the configuration's heads.

    - ``at head``: every head is applied, and every revision it holds is known.
    - ``behind``: every revision it holds is known, and some head is not applied yet.
    - ``ahead``: it holds every head this code knows, plus revisions this code does not know
      (a newer deploy migrated it, or another branch did).
    - ``unknown revision``: it holds revisions this code does not know, and not its heads.
    """
    script = ScriptDirectory.from_config(alembic_config(config_file=config_file))
    heads = tuple(sorted(script.get_heads()))
    revisions = tuple(sorted(current))
    unknown = tuple(r for r in revisions if not _known(script, r))
    known = tuple(r for r in revisions if r not in unknown)
    # A revision stands for its ancestors and dependencies too: the version table keeps only
    # the newest of each line, so an app's head implies app_db's revision it depends on.
    applied = {r.revision for r in script.iterate_revisions(known, "base")} if known else set()
    reached = set(heads) <= applied
    if not unknown:
        state: State = "at head" if reached else "behind"
    else:
        state = "ahead" if reached else "unknown revision"
    return Status(state, revisions, heads, unknown)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def revisions_between(
    before: Iterable[str], after: Iterable[str], *, config_file: ConfigFile = None
) -> list[tuple[str, str]]:
    """Return ``(revision, message)`` of each revision that ``after`` holds and ``before``
    did not, oldest first: what an upgrade from ``before`` to ``after`` applied."""
    script = ScriptDirectory.from_config(alembic_config(config_file=config_file))

    def lineage(revisions: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for revision in revisions:
            found.update(s.revision for s in script.iterate_revisions(revision, "base"))
        return found

    applied = lineage(after) - lineage(before)
    ordered = [s for s in script.walk_revisions() if s.revision in applied]
    return [(s.revision, (s.doc or "").strip().splitlines()[0]) for s in reversed(ordered)]
