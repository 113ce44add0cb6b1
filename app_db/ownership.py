"""Owner-scoped transactions: PostgreSQL's row-level security shows one user's customers.

A session scoped to an owner (``transaction(maker, owner=...)``, or ``scope(db, owner)``) sets
the setting ``app_db.owner_id`` for its transaction as the transaction begins, with
``set_config(..., true)``: local to the transaction, so it is safe behind PgBouncer in
transaction mode, and gone at COMMIT or ROLLBACK. The policy on ``customers`` (see
``policy_sql``) then shows, changes and accepts only that owner's rows, to every statement of
the transaction, raw SQL included. Until its transaction has begun, a scoped session's
read-only lookups (``customers.list``, search) borrow a pooled connection, as unscoped reads
do, and run in a ``READ ONLY`` transaction of their own under the same scope (see
``fastpath.run_borrowed``); every other statement, and every statement once the session's
transaction has begun, runs on the session's own connection, in its transaction. A session
without an owner sees every row, customers with no owner included; a scoped one never sees
those.

PostgreSQL enforces the policy for every role but superusers and roles with ``BYPASSRLS``; the
migration makes it apply to the table's owner too (``FORCE ROW LEVEL SECURITY``).
"""

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import driver_transaction
from app_db.errors import InvalidInputError
from app_db.lazy_session import info_of
from app_db.validation import checked_uuid

OWNER = "app_db_owner"
"""The key of ``AsyncSession.info`` that holds the owner of a scoped session."""
SETTING = "app_db.owner_id"
SET_SQL = f"SELECT set_config('{SETTING}', $1, true)"
RESET_SQL = f"SELECT set_config('{SETTING}', '', true)"
OWNER_FUNCTION = "app_db_owner"


def owner_of(db: AsyncSession) -> uuid.UUID | None:
    """Return the owner the session is scoped to, or ``None`` for an unscoped session."""
    owner: uuid.UUID | None = info_of(db).get(OWNER)
    return owner


async def scope(db: AsyncSession, owner_id: uuid.UUID) -> None:
    """Scope the session to the rows of ``owner_id`` from now on.

    Scoping a session to its own owner again does nothing; to another owner, it raises
    ``InvalidInputError``: a session keeps one scope for its life.
    """
    owner_id = checked_uuid(owner_id, field="owner_id")
    current = owner_of(db)
    if current is not None:
        if current != owner_id:
            raise InvalidInputError("the session is scoped to another owner", field="owner_id")
        return
    db.info[OWNER] = owner_id
    if driver_transaction.held(db) is not None:
        await db.connection()  # SQLAlchemy's transaction adopts the held one: its begin sets it
        return
    transaction = db.sync_session.get_transaction()
    if transaction is not None and transaction.connections:  # begun already: set it now
        connection = await db.connection()
        await connection.exec_driver_sql(SET_SQL, (str(owner_id),))


async def unset_in_outer_transaction(db: AsyncSession) -> None:
    """Take the scope back off a connection whose transaction outlives the session's.

    A session joined to an outer transaction (the test plugin's, say) ends with a RELEASE
    SAVEPOINT, which keeps a setting made after the savepoint: the next session on that
    connection would see only this owner's rows.
    """
    if owner_of(db) is not None and db.in_transaction():
        connection = await db.connection()
        await connection.exec_driver_sql(RESET_SQL)


@event.listens_for(OrmSession, "after_begin")
def set_owner_on_begin(
    session: OrmSession, transaction: SessionTransaction, connection: Connection
) -> None:
    """Set the scope as a scoped session's transaction begins (a savepoint inherits it)."""
    owner: Any = session.info.get(OWNER)
    if owner is not None and not transaction.nested:
        connection.exec_driver_sql(SET_SQL, (str(owner),))


def policy_sql(table: str, column: str = "owner_id") -> list[str]:
    """Return the statements that put ``table`` under the owner policy, for a migration.

    The rows of ``table`` whose ``column`` is the scope's owner are then the only ones a
    scoped transaction sees or may write; an unscoped one sees all. Run them with
    ``op.execute`` in your own revision, after ``app_db``'s (which defines the function
    ``app_db_owner()`` they use), and ``drop_policy_sql`` in its downgrade.
    """
    rule = f"{OWNER_FUNCTION}() IS NULL OR {column} = {OWNER_FUNCTION}()"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_owner ON {table} USING ({rule}) WITH CHECK ({rule})",
    ]


def drop_policy_sql(table: str) -> list[str]:
    """Return the statements that undo ``policy_sql(table)``."""
    return [
        f"DROP POLICY {table}_owner ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]


OWNER_FUNCTION_SQL = f"""
CREATE FUNCTION {OWNER_FUNCTION}() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('{SETTING}', true), '')::uuid $$
"""
"""The scope's owner, or NULL outside a scope (the setting is absent, or '' once reset)."""
