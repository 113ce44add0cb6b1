"""Alembic environment: online through an async engine, offline as SQL text.

The database comes from ``app_db.settings`` (``DATABASE_URL`` or the ``POSTGRES_*`` parts).
Programmatic callers may pass ``config.attributes["settings"]`` (a ``Settings``) or
``config.attributes["connection"]`` (a sync ``Connection`` from ``AsyncConnection.run_sync``).
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from app_db.models import metadata
from app_db.settings import Settings, load_settings

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        **options,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(dialect_name="postgresql", literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async_migrations(settings: Settings) -> None:
    engine = create_async_engine(
        settings.sqlalchemy_url(),
        poolclass=pool.NullPool,
        connect_args=settings.connect_args(),
        hide_parameters=True,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return
    settings = config.attributes.get("settings") or load_settings()
    asyncio.run(_run_async_migrations(settings))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
