"""``app-db migrations init``: an Alembic project for an app's own tables beside app_db's."""

import importlib.util
import re
import shutil
from pathlib import Path

from app_db.migrations import PROJECT_CONFIG, script_location, version_location

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

INI = """\
# Alembic configuration of this project, written by `app-db migrations init`. It holds no
# database URL: env.py reads DATABASE_URL (or the POSTGRES_* parts) through app_db's settings.
# app_db's own revision lives in the installed package; this project's in {path}/versions.
[alembic]
script_location = %(here)s/{path}
version_locations = %(here)s/{path}/versions {app_db_versions}
path_separator = space
prepend_sys_path = %(here)s
revision_environment = true
file_template = %%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s
truncate_slug_length = 40
timezone = UTC

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

ENV = '''\
"""Alembic environment of this project: app_db's tables and this app's, in one database.

Written by `app-db migrations init`. The URL comes from app_db's settings (DATABASE_URL).
New revisions go to this folder's versions/, on the branch "{branch}", after app_db's.
"""

import {module}  # noqa: F401 - defines the app's tables on app_db's metadata
from app_db.alembic_env import run_migrations

run_migrations(branch="{branch}")
'''


class ScaffoldError(ValueError):
    """Raise when the project cannot be scaffolded as asked; the message says why."""


def init_project(project: Path, *, models: str, path: str, branch: str | None = None) -> list[Path]:
    """Write ``alembic.ini`` and ``path/`` (``env.py``, ``script.py.mako``, ``versions/``).

    ``models`` is the module that defines the app's tables; it must import from ``project``.
    Nothing is overwritten. Return the files and folders written.
    """
    if not all(_IDENTIFIER.fullmatch(part) for part in models.split(".")):
        raise ScaffoldError(f"--models must be a module name such as myapp.models, not {models!r}")
    label = branch or models.split(".", maxsplit=1)[0]
    if not _IDENTIFIER.fullmatch(label) or label == "app_db":
        raise ScaffoldError(f"the branch label must be an identifier other than app_db: {label!r}")
    if Path(path).is_absolute() or ".." in Path(path).parts or " " in path:
        raise ScaffoldError(f"--path must be a folder inside the project, without spaces: {path}")
    ini, folder = project / PROJECT_CONFIG, project / path
    for existing in (ini, folder / "env.py"):
        if existing.exists():
            raise ScaffoldError(f"{existing} already exists; nothing was written")
    if not _importable(models, project):
        raise ScaffoldError(f"cannot find module {models!r} from {project}")
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    ini.write_text(INI.format(path=Path(path).as_posix(), app_db_versions=version_location()))
    (folder / "env.py").write_text(ENV.format(module=models, branch=label))
    shutil.copyfile(script_location() / "script.py.mako", folder / "script.py.mako")
    return [ini, folder / "env.py", folder / "script.py.mako", versions]


def _importable(module: str, project: Path) -> bool:
    top = module.split(".", maxsplit=1)[0]
    if (project / top).is_dir() or (project / f"{top}.py").is_file():
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except ImportError:
        return False
