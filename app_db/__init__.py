"""Async data access for PostgreSQL on SQLModel, SQLAlchemy 2 asyncio and asyncpg."""

from app_db import customers, errors, fastpath, health, sessions, users
from app_db.cluster.routing import commit_position
from app_db.engine import create_engine, create_sessionmaker, transaction
from app_db.errors import (
    AppDBError,
    ConfigurationError,
    ConflictError,
    DatabaseUnavailableError,
    DuplicateEmailError,
    FencedServerError,
    InvalidInputError,
    NotFoundError,
    PoolTimeoutError,
    StatementTimeoutError,
)
from app_db.models import (
    AppModel,
    Customer,
    CustomerCreate,
    CustomerRead,
    CustomerUpdate,
    Session,
    SessionCreate,
    SessionRead,
    SessionUpdate,
    User,
    UserCreate,
    UserRead,
    UserUpdate,
)
from app_db.observe.stats import PoolStats, pool_stats
from app_db.pagination import Page
from app_db.settings import SessionSettings, Settings, load_session_settings, load_settings

__all__ = [
    "AppDBError",
    "AppModel",
    "ConfigurationError",
    "ConflictError",
    "Customer",
    "CustomerCreate",
    "CustomerRead",
    "CustomerUpdate",
    "DatabaseUnavailableError",
    "DuplicateEmailError",
    "FencedServerError",
    "InvalidInputError",
    "NotFoundError",
    "Page",
    "PoolStats",
    "PoolTimeoutError",
    "Session",
    "SessionCreate",
    "SessionRead",
    "SessionSettings",
    "SessionUpdate",
    "Settings",
    "StatementTimeoutError",
    "User",
    "UserCreate",
    "UserRead",
    "UserUpdate",
    "commit_position",
    "create_engine",
    "create_sessionmaker",
    "customers",
    "errors",
    "fastpath",
    "health",
    "load_session_settings",
    "load_settings",
    "pool_stats",
    "sessions",
    "transaction",
    "users",
]
