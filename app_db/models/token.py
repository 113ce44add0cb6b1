"""One-time tokens: a password reset or an email verification, used once, then spent."""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, Text
from sqlmodel import Field

from app_db.models.base import AppModel
from app_db.models.columns import created_at_field, id_field
from app_db.models.session import TOKEN_HASH_BYTES
from app_db.models.types import TZDateTime

PASSWORD_RESET = "password_reset"  # noqa: S105  # pragma: allowlist secret
EMAIL_VERIFICATION = "email_verification"
PURPOSES = (PASSWORD_RESET, EMAIL_VERIFICATION)


class OneTimeToken(AppModel, table=True):
    """A token issued for one purpose: only its SHA-256 is stored, it expires, it is used once."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (
        CheckConstraint(f"octet_length(token_hash) = {TOKEN_HASH_BYTES}", name="token_hash_length"),
        CheckConstraint(
            "purpose IN (" + ", ".join(f"'{p}'" for p in PURPOSES) + ")", name="purpose_known"
        ),
        CheckConstraint("expires_at > created_at", name="expires_at_after_created_at"),
        Index("ix_one_time_tokens_user_id_purpose", "user_id", "purpose"),
    )

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    purpose: str = Field(sa_type=Text)
    token_hash: bytes = Field(sa_type=LargeBinary, unique=True, repr=False)
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=TZDateTime, nullable=False, index=True)
    used_at: datetime | None = Field(default=None, sa_type=TZDateTime)
