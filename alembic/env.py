"""Alembic environment of app_db's own revision: online through an async engine, or as SQL.

See ``app_db.alembic_env`` for where the database comes from.
"""

from app_db.alembic_env import run_migrations

run_migrations()
