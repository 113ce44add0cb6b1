"""Async data access for PostgreSQL on SQLModel, SQLAlchemy 2 asyncio and asyncpg."""

from app_db.engine import create_engine, create_sessionmaker, transaction
from app_db.errors import AppDBError, ConfigurationError
from app_db.settings import Settings, load_settings

__all__ = [
    "AppDBError",
    "ConfigurationError",
    "Settings",
    "create_engine",
    "create_sessionmaker",
    "load_settings",
    "transaction",
]
