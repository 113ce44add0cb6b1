"""Users: sign-up, lookup, authentication and account changes.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import uuid

from pydantic import SecretStr, TypeAdapter
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, fastpath, sessions
from app_db.errors import (
    InvalidInputError,
    NotFoundError,
    ThrottledError,
    row_required,
    typed_errors,
)
from app_db.models import User, UserCreate, UserUpdate
from app_db.models.password import Password
from app_db.models.types import EMAIL_MAX_LENGTH, normalize_email
from app_db.observe.spans import traced
from app_db.security import events, throttle
from app_db.security.events import Client, current_client
from app_db.security.passwords import (
    burn_verification,
    hash_password,
    needs_rehash,
    verify_password,
)
from app_db.security.policy import check_new_password
from app_db.settings import ThrottleSettings
from app_db.validation import validated, validated_value

_PASSWORD = TypeAdapter(Password)
_USER_NAMES = fastpath.column_names(User)
_BY_EMAIL = coalesce.by_key(
    "users.email", "users", _USER_NAMES, "lower(t.email) = lower({})", "text"
)
_BY_ID = coalesce.by_key("users.id", "users", _USER_NAMES, "t.id = {}", "uuid")


@traced
@typed_errors
async def create(db: AsyncSession, data: UserCreate) -> User:
    """Create a user with a normalised email and an argon2id password hash.

    The password must not be common, nor the email or name (``UserCreate`` checks that), nor
    known to the breach check when ``PASSWORD_BREACH_CHECK`` names one. Raises
    ``DuplicateEmailError`` when the email is taken in any letter case. The insert runs in a
    savepoint, so the caller's transaction stays usable after that error.
    """
    data = validated(UserCreate, data)
    secret = data.password.get_secret_value()
    await check_new_password(secret, email=data.email, display_name=data.display_name)
    password_hash = await hash_password(secret)
    user = User.model_validate(data, update={"password_hash": password_hash})
    async with db.begin_nested():
        db.add(user)
    return user


@traced
@typed_errors
async def get(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Return the user with this id, or ``None``; the user joins the session, as ``db.get``."""
    return await coalesce.get_into(db, User, _BY_ID, user_id)


@traced
@typed_errors
async def get_by_email(db: AsyncSession, email: str) -> User | None:
    """Return the user with this email in any letter case, or ``None`` (served by the index)."""
    lookup = _lookup_form(email)
    if lookup is None:
        return None
    row = await coalesce.fetchrow(db, _BY_EMAIL, lookup, read_only=True)
    return None if row is None else fastpath.load(db, User, row)


def _lookup_form(email: str) -> str | None:
    """Return what ``lower()`` is compared with, or ``None`` for what no stored email can be.

    Stored emails are normalised; the comparison is case-insensitive, so a plain ASCII address
    only needs trimming (the full validator costs more than the query). Anything else goes
    through the same normalisation as ``create``.
    """
    candidate = email.strip() if isinstance(email, str) else ""
    if candidate.isascii() and 3 <= len(candidate) <= EMAIL_MAX_LENGTH:
        if "@" in candidate and "\x00" not in candidate:
            return candidate
        return None
    try:
        return normalize_email(candidate)
    except ValueError:
        return None


@traced
@typed_errors
async def authenticate(
    db: AsyncSession,
    email: str,
    password: str | SecretStr,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    limits: ThrottleSettings | None = None,
) -> User | None:
    """Return the active user whose password matches, else ``None``; refuse while throttled.

    ``ip`` is the client's address (default: that of the enclosing ``security.client``
    block). Failures are counted per account and client network, and per network, in
    PostgreSQL (see ``app_db.security.throttle``); while a count's delay runs, the attempt
    raises ``ThrottledError`` with ``retry_after``, before any password is checked. The count
    is committed on its own, whatever becomes of the caller's transaction. An unknown email
    costs one hash verification too, so timing does not reveal which emails exist. A hash made
    with older parameters is replaced by one with the current parameters (in a savepoint: a
    user deleted meanwhile gets ``None``, and the transaction stays usable). Each outcome is a
    security event on the logger ``app_db.security``.
    """
    plain = password.get_secret_value() if isinstance(password, SecretStr) else password
    asking = current_client()
    address = asking.address if ip is None else ip
    agent = asking.user_agent if user_agent is None else user_agent
    policy = limits or throttle.default_settings()
    network = throttle.network_of(address, policy)
    lookup = _lookup_form(email)
    counted = throttle.attempt("login", (lookup or "?").lower(), network)
    client = Client(address, agent)
    try:
        await throttle.admit(db, counted, policy)
    except ThrottledError as refused:
        events.record(events.LOGIN_THROTTLED, retry_after=refused.retry_after, client=client)
        raise
    user = await get_by_email(db, email) if lookup is not None else None
    if user is None:
        await burn_verification(plain, network=network)
        events.record(events.LOGIN_FAILED, reason="unknown_email", client=client)
        return None
    if not await verify_password(user.password_hash, plain, network=network):
        events.record(events.LOGIN_FAILED, reason="wrong_password", user_id=user.id, client=client)
        return None
    if not user.is_active:
        events.record(events.LOGIN_FAILED, reason="inactive", user_id=user.id, client=client)
        return None
    await throttle.succeeded(db, counted, policy)
    if needs_rehash(user.password_hash):
        password_hash = await hash_password(plain)
        try:
            async with db.begin_nested():
                db.add(user)
                user.password_hash = password_hash
        except StaleDataError:
            return None
    events.record(events.LOGIN_SUCCEEDED, user_id=user.id, client=client)
    return user


@traced
@typed_errors
async def update(
    db: AsyncSession,
    user_id: uuid.UUID,
    data: UserUpdate,
    *,
    keep_session_id: uuid.UUID | None = None,
) -> User:
    """Apply the fields set in ``data``; raise ``NotFoundError`` or ``DuplicateEmailError``.

    A new email (not only in another letter case) is a new login name: every session of the
    user but ``keep_session_id`` (the device that made the change) is revoked. The change is
    written in a savepoint: after either error the transaction stays usable.
    """
    data = validated(UserUpdate, data)
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes and changes["email"] is None:
        raise InvalidInputError("email cannot be removed", field="email")
    user = await _require(db, user_id)
    new_email = "email" in changes and changes["email"].lower() != user.email.lower()
    with row_required("user", user_id):
        async with db.begin_nested():
            user.sqlmodel_update(changes)
    if new_email:
        events.record(events.EMAIL_CHANGED, user_id=user_id)
        await sessions.revoke_all(
            db, user_id, except_session_id=keep_session_id, reason="email_changed"
        )
    return user


@traced
@typed_errors
async def set_password(
    db: AsyncSession,
    user_id: uuid.UUID,
    password: str | SecretStr,
    *,
    keep_session_id: uuid.UUID | None = None,
    revoke_sessions: bool = True,
) -> int:
    """Replace the user's password hash and revoke their other sessions; return how many.

    Every live session of the user but ``keep_session_id`` (the device that made the change)
    is revoked, unless ``revoke_sessions`` is false (say, when the user chose to keep their
    other devices signed in). The password is checked as ``create`` checks it. Raise
    ``NotFoundError`` when there is no such user, also when another transaction deleted it
    after this one loaded it (that failed write ends the transaction: roll it back).
    """
    secret = validated_value(_PASSWORD, password, field="password").get_secret_value()
    user = await _require(db, user_id)
    await check_new_password(secret, email=user.email, display_name=user.display_name)
    user.password_hash = await hash_password(secret)
    with row_required("user", user_id):
        await db.flush()
    events.record(events.PASSWORD_CHANGED, user_id=user_id)
    if not revoke_sessions:
        return 0
    return await sessions.revoke_all(
        db, user_id, except_session_id=keep_session_id, reason="password_changed"
    )


@traced
@typed_errors
async def deactivate(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Mark the user inactive and revoke all of their sessions; raise ``NotFoundError`` as
    ``set_password`` does."""
    user = await _require(db, user_id)
    user.is_active = False
    with row_required("user", user_id):
        await db.flush()
    events.record(events.USER_DEACTIVATED, user_id=user_id)
    await sessions.revoke_all(db, user_id, reason="deactivated")


async def _require(db: AsyncSession, user_id: uuid.UUID) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFoundError("user", user_id)
    return user
