"""Initial schema: users, sessions, one-time tokens, login counters, customers (owner policy).

This is the project's only revision. Until the first release it is edited in place.

Revision ID: app_db_0001
Revises:
Create Date: 2026-11-25 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app_db.models.types
import app_db.ownership

revision: str = "app_db_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("app_db",)
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _timestamp(
    name: str, *, server_default: bool = True, nullable: bool = False
) -> sa.Column[object]:
    return sa.Column(
        name,
        app_db.models.types.TZDateTime(),
        server_default=sa.text("now()") if server_default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    # Trigram indexes serve the case-insensitive customer search (ILIKE '%term%'). pg_trgm is
    # a trusted extension: the database owner may create it. Downgrade leaves it in place,
    # since other schemas in the database may use it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        _timestamp("verified_at", server_default=False, nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.CheckConstraint(
            "char_length(email) BETWEEN 3 AND 320", name=op.f("ck_users_email_length")
        ),
        sa.CheckConstraint(
            "char_length(display_name) BETWEEN 1 AND 100",
            name=op.f("ck_users_display_name_length"),
        ),
        sa.CheckConstraint("password_hash <> ''", name=op.f("ck_users_password_hash_not_empty")),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])

    op.create_table(
        "sessions",
        _id(),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", server_default=False),
        _timestamp("last_seen_at"),
        _timestamp("revoked_at", server_default=False, nullable=True),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sessions_token_hash")),
        sa.CheckConstraint(
            "octet_length(token_hash) = 32", name=op.f("ck_sessions_token_hash_length")
        ),
        sa.CheckConstraint(
            "char_length(user_agent) <= 512", name=op.f("ck_sessions_user_agent_length")
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_sessions_expires_at_after_created_at")
        ),
    )
    op.create_index(op.f("ix_sessions_expires_at"), "sessions", ["expires_at"])
    # A user's sessions that have not expired: where the session cap looks (see the model).
    op.create_index("ix_sessions_user_id_expires_at", "sessions", ["user_id", "expires_at"])
    # Room on each page for a revoked session's new row version: revoked_at is in no index,
    # so PostgreSQL writes it in place (a HOT update), without an entry in every index.
    op.execute("ALTER TABLE sessions SET (fillfactor = 85)")

    # One-time tokens (password reset, email verification): SHA-256 only, expiring, used once.
    op.create_table(
        "one_time_tokens",
        _id(),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", server_default=False),
        _timestamp("used_at", server_default=False, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_tokens")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_one_time_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_one_time_tokens_token_hash")),
        sa.CheckConstraint(
            "octet_length(token_hash) = 32", name=op.f("ck_one_time_tokens_token_hash_length")
        ),
        sa.CheckConstraint(
            "purpose IN ('password_reset', 'email_verification')",
            name=op.f("ck_one_time_tokens_purpose_known"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_one_time_tokens_expires_at_after_created_at")
        ),
    )
    op.create_index("ix_one_time_tokens_user_id_purpose", "one_time_tokens", ["user_id", "purpose"])
    op.create_index(op.f("ix_one_time_tokens_expires_at"), "one_time_tokens", ["expires_at"])

    # Failed-login counters, keyed by a SHA-256 (no email, no address in the table).
    op.create_table(
        "throttles",
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        _timestamp("last_attempt_at"),
        _timestamp("blocked_until", server_default=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_throttles")),
        sa.CheckConstraint("octet_length(key) = 32", name=op.f("ck_throttles_key_length")),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_throttles_failures_not_negative")),
    )
    op.create_index("ix_throttles_last_attempt_at", "throttles", ["last_attempt_at"])

    op.create_table(
        "customers",
        _id(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_customers_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "char_length(name) BETWEEN 1 AND 200", name=op.f("ck_customers_name_length")
        ),
        sa.CheckConstraint(
            "char_length(email) BETWEEN 3 AND 320", name=op.f("ck_customers_email_length")
        ),
        sa.CheckConstraint(
            "char_length(phone) BETWEEN 3 AND 32", name=op.f("ck_customers_phone_length")
        ),
    )
    # A scoped list reads one owner's customers in page order; it also serves the foreign key.
    op.create_index(
        "ix_customers_owner_id_created_at_id", "customers", ["owner_id", "created_at", "id"]
    )
    op.create_index("ix_customers_created_at_id", "customers", ["created_at", "id"])
    op.create_index(
        "ix_customers_name_trgm",
        "customers",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_customers_email_trgm",
        "customers",
        ["email"],
        postgresql_using="gin",
        postgresql_ops={"email": "gin_trgm_ops"},
    )
    # The customers whose name or email matches an ILIKE pattern, always found through the
    # trigram indexes: a generic plan cannot see the pattern, and up to some 100,000 rows it
    # would read the whole table instead, even for a pattern that no row matches.
    op.execute(
        """
        CREATE FUNCTION customers_matching(pattern text) RETURNS SETOF customers
        LANGUAGE sql STABLE PARALLEL SAFE
        SET enable_seqscan = off SET enable_indexscan = off
        AS $$ SELECT * FROM customers WHERE name ILIKE pattern OR email ILIKE pattern $$
        """
    )
    # Row-level security: a transaction scoped to an owner (the setting app_db.owner_id) sees
    # and writes only that owner's customers, whatever SQL it runs; an unscoped one sees all.
    op.execute(app_db.ownership.OWNER_FUNCTION_SQL)
    for statement in app_db.ownership.policy_sql("customers"):
        op.execute(statement)


def downgrade() -> None:
    for statement in app_db.ownership.drop_policy_sql("customers"):
        op.execute(statement)
    op.execute(f"DROP FUNCTION {app_db.ownership.OWNER_FUNCTION}()")
    op.execute("DROP FUNCTION customers_matching(text)")
    op.drop_index("ix_customers_email_trgm", table_name="customers")
    op.drop_index("ix_customers_name_trgm", table_name="customers")
    op.drop_index("ix_customers_created_at_id", table_name="customers")
    op.drop_index("ix_customers_owner_id_created_at_id", table_name="customers")
    op.drop_table("customers")
    op.drop_index(op.f("ix_one_time_tokens_expires_at"), table_name="one_time_tokens")
    op.drop_index("ix_one_time_tokens_user_id_purpose", table_name="one_time_tokens")
    op.drop_table("one_time_tokens")
    op.drop_index("ix_throttles_last_attempt_at", table_name="throttles")
    op.drop_table("throttles")
    op.drop_index("ix_sessions_user_id_expires_at", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_users_created_at_id", table_name="users")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_table("users")
