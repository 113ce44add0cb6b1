"""The async engine, its sessionmaker and the unit-of-work context manager."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.settings import Settings, load_settings


def create_engine(settings: Settings | None = None, **engine_options: Any) -> AsyncEngine:
    """Build an ``AsyncEngine`` from settings (read from the environment when not given).

    Server settings (``application_name``, ``statement_timeout``) and SSL reach asyncpg through
    ``connect_args``. Keyword arguments override the pool options taken from the settings.
    Nothing connects until the engine is first used.
    """
    settings = settings if settings is not None else load_settings()
    options: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout,
        "pool_recycle": settings.database_pool_recycle,
        "pool_pre_ping": settings.database_pool_pre_ping,
        "echo": settings.database_echo,
        "hide_parameters": True,
        "connect_args": settings.connect_args(),
    }
    options.update(engine_options)
    return create_async_engine(settings.sqlalchemy_url(), **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a factory of SQLModel ``AsyncSession`` objects that keep attributes after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a transaction: commit when the block succeeds, roll back if not."""
    async with sessionmaker() as session, session.begin():
        yield session
