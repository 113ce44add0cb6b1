"""What an Alembic ``env.py`` does for app_db's revision and for an app's revisions beside it.

app_db's own ``env.py`` and the one ``app-db migrations init`` writes both call
``run_migrations``. The database comes from app_db's settings (``DATABASE_URL`` or the
``POSTGRES_*`` parts), unless the caller passes ``config.attributes["settings"]`` (a
``Settings``) or ``config.attributes["connection"]`` (a sync ``Connection`` or ``Engine``).
"""

import asyncio
from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, pool
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.sql.sqltypes import AutoString

from app_db.models import metadata
from app_db.models.types import IPAddressType, TZDateTime
from app_db.settings import Settings, load_settings

APP_DB_BRANCH = "app_db"
"""The branch label of app_db's revision; ``app_db@head`` names it."""


def run_migrations(*, branch: str | None = None) -> None:
    """Run the migrations Alembic asked for, offline as SQL text or online.

    ``branch`` is the label of the app's own revisions (``None`` in app_db itself). With it,
    a new revision is written into the project's ``versions/`` folder: the first one starts
    the branch and depends on app_db's revision, the next ones follow the branch's head.
    """
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    options: dict[str, Any] = {
        "target_metadata": metadata,
        "compare_type": True,
        "compare_server_default": True,
        "render_item": render_item,
    }
    if branch is not None:
        options["process_revision_directives"] = _place_in_branch(branch)
    if context.is_offline_mode():
        context.configure(dialect_name="postgresql", literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    given = config.attributes.get("connection")
    if isinstance(given, Engine):
        with given.connect() as connection:
            _run_online(connection, options)
            connection.commit()
    elif given is not None:
        _run_online(given, options)
    else:
        settings = config.attributes.get("settings") or load_settings()
        asyncio.run(_run_async(settings, options))


def _run_online(connection: Connection, options: dict[str, Any]) -> None:
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(settings: Settings, options: dict[str, Any]) -> None:
    engine = create_async_engine(
        settings.sqlalchemy_url(),
        poolclass=pool.NullPool,
        connect_args=settings.connect_args(),
        hide_parameters=True,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_online, options)
            await connection.commit()
    finally:
        await engine.dispose()


_TYPES_MODULE = "app_db.models.types"


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | bool:
    """Render app_db's column types (and SQLModel's) with the import they need."""
    if kind != "type":
        return False
    if isinstance(item, TZDateTime | IPAddressType):
        autogen_context.imports.add(f"import {_TYPES_MODULE}")
        return f"{_TYPES_MODULE}.{type(item).__name__}()"
    if isinstance(item, AutoString):
        autogen_context.imports.add("import sqlmodel")
        length = f"length={item.length}" if item.length else ""
        return f"sqlmodel.sql.sqltypes.AutoString({length})"
    return False


def _place_in_branch(branch: str) -> Any:
    def place(_: MigrationContext, __: object, directives: list[MigrationScript]) -> None:
        script = context.script
        for directive in directives:
            directive.version_path = str(Path(script.dir) / "versions")
            if _has_branch(script, branch):
                directive.head = f"{branch}@head"
            else:
                directive.head = "base"
                directive.branch_label = branch
                directive.depends_on = _app_db_heads(script)

    return place


def _has_branch(script: ScriptDirectory, branch: str) -> bool:
    return any(branch in revision.branch_labels for revision in script.walk_revisions())


def _app_db_heads(script: ScriptDirectory) -> list[str]:
    return [revision.revision for revision in script.get_revisions(f"{APP_DB_BRANCH}@head")]
