"""Login sessions: one row per issued token, keyed by the token's SHA-256, never the token."""

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, StringConstraints
from sqlalchemy import CheckConstraint, Index, LargeBinary, Text
from sqlmodel import Field

from app_db.models.base import AppModel, StoredRead
from app_db.models.columns import created_at_field, id_field
from app_db.models.types import IPAddressType, PostgresText, TZDateTime, stored_as

TOKEN_HASH_BYTES = 32
USER_AGENT_MAX_LENGTH = 512


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None  # ipaddress's message repeats it


IPAddress = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_ip_address)]
UserAgent = Annotated[str, StringConstraints(max_length=USER_AGENT_MAX_LENGTH), PostgresText]


class SessionBase(AppModel):
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    ip: IPAddress | None = Field(default=None, sa_type=IPAddressType)
    user_agent: UserAgent | None = Field(default=None, sa_type=Text)


class SessionCreate(SessionBase):
    expires_at: AwareDatetime


class SessionUpdate(AppModel):
    expires_at: AwareDatetime | None = None
    last_seen_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None


class SessionRead(SessionBase, StoredRead):
    # Read fields trust what the database holds (``stored_as``): the same JSON schema, no
    # validator run again. (A docstring here would change the OpenAPI schema's description.)
    ip: Annotated[str, stored_as(IPAddress)] | None = None
    user_agent: Annotated[str, stored_as(UserAgent)] | None = None
    id: uuid.UUID
    created_at: AwareDatetime
    expires_at: AwareDatetime
    last_seen_at: AwareDatetime
    revoked_at: AwareDatetime | None


class Session(SessionBase, table=True):
    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint(f"octet_length(token_hash) = {TOKEN_HASH_BYTES}", name="token_hash_length"),
        CheckConstraint(
            f"char_length(user_agent) <= {USER_AGENT_MAX_LENGTH}", name="user_agent_length"
        ),
        CheckConstraint("expires_at > created_at", name="expires_at_after_created_at"),
        # A user's sessions that have not expired: the session cap counts the live ones among
        # them at each login, never reading expired ones, purged or not. Revoked ones it does
        # read until they expire: as many as the sessions issued to the user since (a password
        # login pays an argon2 verification, 50 ms or more; reading 50,000 revoked rows, 7 ms).
        # No index holds revoked_at: a revocation is then an update in place (HOT) on the
        # room that the migration's fillfactor leaves on each page, with no index entry.
        Index("ix_sessions_user_id_expires_at", "user_id", "expires_at"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: uuid.UUID = id_field()
    token_hash: bytes = Field(sa_type=LargeBinary, unique=True, repr=False)
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_type=TZDateTime, nullable=False, index=True)
    last_seen_at: datetime = created_at_field()
    revoked_at: datetime | None = Field(default=None, sa_type=TZDateTime)
