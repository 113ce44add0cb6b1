"""Failed-attempt counters: one row per throttled subject (an account at a network, a network)."""

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary
from sqlmodel import Field

from app_db.models.base import AppModel
from app_db.models.columns import created_at_field
from app_db.models.types import TZDateTime

KEY_BYTES = 32


class Throttle(AppModel, table=True):
    """A counter of attempts that did not succeed, keyed by the SHA-256 of what it counts.

    The key hashes the action, the account's email and the client's network, so the table
    holds no email and no address.
    """

    __tablename__ = "throttles"
    __table_args__ = (
        CheckConstraint(f"octet_length(key) = {KEY_BYTES}", name="key_length"),
        CheckConstraint("failures >= 0", name="failures_not_negative"),
        Index("ix_throttles_last_attempt_at", "last_attempt_at"),  # the purge's order
    )

    key: bytes = Field(sa_type=LargeBinary, primary_key=True, repr=False)
    failures: int
    last_attempt_at: datetime = created_at_field()
    blocked_until: datetime = Field(sa_type=TZDateTime, nullable=False)
