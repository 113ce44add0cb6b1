"""Async data access for PostgreSQL on SQLModel, SQLAlchemy 2 asyncio and asyncpg."""

from app_db import customers, errors, fastpath, health, sessions, users
from app_db.engine import create_engine, create_sessionmaker, transaction
from app_db.errors import (
    AppDBError,
    ConfigurationError,
    ConflictError,
    DatabaseUnavailableError,
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    PoolTimeoutError,
    StatementTimeoutError,
)
from app_db.pagination import Page
from app_db.settings import SessionSettings, Settings, load_session_settings, load_settings

__all__ = [
    "AppDBError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DuplicateEmailError",
    "InvalidInputError",
    "NotFoundError",
    "Page",
    "PoolTimeoutError",
    "SessionSettings",
    "Settings",
    "StatementTimeoutError",
    "create_engine",
    "create_sessionmaker",
    "customers",
    "errors",
    "fastpath",
    "health",
    "load_session_settings",
    "load_settings",
    "sessions",
    "transaction",
    "users",
]
