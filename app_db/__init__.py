"""Async data access for PostgreSQL on SQLModel, SQLAlchemy 2 asyncio and asyncpg."""

from app_db import customers, errors, health, sessions, users
from app_db.engine import create_engine, create_sessionmaker, transaction
from app_db.errors import (
    AppDBError,
    ConfigurationError,
    ConflictError,
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
)
from app_db.pagination import Page
from app_db.settings import SessionSettings, Settings, load_session_settings, load_settings

__all__ = [
    "AppDBError",
    "ConfigurationError",
    "ConflictError",
    "DuplicateEmailError",
    "InvalidInputError",
    "NotFoundError",
    "Page",
    "SessionSettings",
    "Settings",
    "create_engine",
    "create_sessionmaker",
    "customers",
    "errors",
    "health",
    "load_session_settings",
    "load_settings",
    "sessions",
    "transaction",
    "users",
]
