"""Users: sign-up, lookup, authentication and account changes.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import builtins
import uuid
from datetime import datetime
from typing import Protocol, cast, runtime_checkable

from pydantic import SecretStr, TypeAdapter
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, fastpath, instances, rows, sessions
from app_db.errors import (
    InvalidInputError,
    InvalidTokenError,
    NotFoundError,
    ThrottledError,
    row_required,
)
from app_db.models import User, UserCreate, UserUpdate
from app_db.models.password import Password
from app_db.models.token import EMAIL_VERIFICATION, PASSWORD_RESET
from app_db.models.types import EMAIL_MAX_LENGTH, normalize_email
from app_db.observe.spans import public
from app_db.pagination import (
    Page,
    decode_cursor,
    escape_like,
    page_of,
    rows_to_read,
    search_term,
)
from app_db.security import events, one_time, throttle
from app_db.security.events import Client, current_client
from app_db.security.passwords import (
    burn_verification,
    hash_password,
    needs_rehash,
    verify_password,
)
from app_db.security.policy import check_new_password
from app_db.settings import ThrottleSettings, TokenSettings
from app_db.validation import checked_uuid, checked_uuid_or_none, validated, validated_value

DEFAULT_PURGE_BATCH = 1000
_PASSWORD = TypeAdapter(Password)
_USER_NAMES = instances.column_names(User)
_BY_EMAIL = coalesce.by_key(
    "users.email", "users", _USER_NAMES, "lower(t.email) = lower({})", "text"
)
_BY_ID = coalesce.by_key("users.id", "users", _USER_NAMES, "t.id = {}", "uuid")


@public
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


@public
async def get(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """Return the user with this id, or ``None``; the user joins the session, as ``db.get``."""
    return await coalesce.get_into(db, User, _BY_ID, checked_uuid(user_id, field="user_id"))


@public
async def get_by_email(db: AsyncSession, email: str) -> User | None:
    """Return the user with this email in any letter case, or ``None`` (served by the index).

    With a read replica it reads there when the transaction's route allows (see ``transaction``).
    """
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


@public
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
    # On the primary, never a replica: a user created a moment ago logs in at once.
    row = None if lookup is None else await coalesce.fetchrow(db, _BY_EMAIL, lookup)
    user = None if row is None else fastpath.load(db, User, row)
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


@public
async def update(
    db: AsyncSession,
    user_id: uuid.UUID,
    data: UserUpdate,
    *,
    keep_session_id: uuid.UUID | None = None,
) -> User:
    """Apply the fields set in ``data``; raise ``NotFoundError`` or ``DuplicateEmailError``.

    A new email (not only in another letter case) is a new login name: every session of the
    user but ``keep_session_id`` (the device that made the change) is revoked, the email is no
    longer verified (``verified_at`` is cleared), and unused tokens sent to the old address
    are voided. The change is
    written in a savepoint: after either error the transaction stays usable.
    """
    data = validated(UserUpdate, data)
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes and changes["email"] is None:
        raise InvalidInputError("email cannot be removed", field="email")
    user = await _require(db, user_id)
    keep_session_id = checked_uuid_or_none(keep_session_id, field="keep_session_id")
    new_email = "email" in changes and changes["email"].lower() != user.email.lower()
    if new_email:
        changes["verified_at"] = None
    with row_required("user", user_id):
        async with db.begin_nested():
            user.sqlmodel_update(changes)
    if new_email:
        await one_time.void(db, user_id, EMAIL_VERIFICATION, PASSWORD_RESET)
        events.record(events.EMAIL_CHANGED, user_id=user_id)
        await sessions.revoke_all(
            db, user_id, except_session_id=keep_session_id, reason="email_changed"
        )
    return user


@public
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
    keep_session_id = checked_uuid_or_none(keep_session_id, field="keep_session_id")
    await check_new_password(secret, email=user.email, display_name=user.display_name)
    user.password_hash = await hash_password(secret)
    with row_required("user", user_id):
        await db.flush()
    await one_time.void(db, user_id, PASSWORD_RESET)
    events.record(events.PASSWORD_CHANGED, user_id=user_id)
    if not revoke_sessions:
        return 0
    return await sessions.revoke_all(
        db, user_id, except_session_id=keep_session_id, reason="password_changed"
    )


@public
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
    user = await db.get(User, checked_uuid(user_id, field="user_id"))
    if user is None:
        raise NotFoundError("user", user_id)
    return user


@public
async def forgot_password(
    db: AsyncSession,
    email: str,
    *,
    ip: str | None = None,
    limits: ThrottleSettings | None = None,
    settings: TokenSettings | None = None,
) -> str | None:
    """Return a password reset token for the active user with this email (the app mails it),
    else ``None``, in the same time: an answer does not tell which emails have accounts.

    The token lasts ``TOKEN_RESET_LIFETIME`` (30 minutes) and voids older ones. Requests are
    throttled like logins, per account (from any network) and per client network, so that
    nobody can flood an inbox: every request counts, and past the free ones
    ``ThrottledError`` says how long to wait. ``ip`` defaults as in ``authenticate``.
    """
    policy = limits or throttle.default_settings()
    address = current_client().address if ip is None else ip
    network = throttle.network_of(address, policy)
    lookup = _lookup_form(email)
    counted = throttle.attempt("forgot_password", (lookup or "?").lower(), None)
    by_network = throttle.attempt("forgot_password", "-", network).network
    await throttle.admit(db, throttle.Attempt(counted.account, by_network), policy)
    lifetime = (settings or one_time.default_settings()).reset_lifetime
    issued = await one_time.issue_by_email(db, lookup or "", PASSWORD_RESET, lifetime)
    events.record(events.PASSWORD_RESET_REQUESTED, user_id=None if issued is None else issued[1])
    return None if issued is None else issued[0]


@public
async def reset_password(db: AsyncSession, token: str, password: str | SecretStr) -> User:
    """Set a new password with a reset token; spend the token; end every session of the user.

    An unknown, expired, spent or voided token raises ``InvalidTokenError``; a refused password
    raises ``InvalidInputError`` and leaves the token unspent.
    """
    secret = validated_value(_PASSWORD, password, field="password").get_secret_value()
    user_id = await one_time.holder(db, token, PASSWORD_RESET)
    user = None if user_id is None else await db.get(User, user_id)
    if user is None or not user.is_active:
        raise InvalidTokenError
    await check_new_password(secret, email=user.email, display_name=user.display_name)
    password_hash = await hash_password(secret)
    if await one_time.spend(db, token, PASSWORD_RESET) != user.id:
        raise InvalidTokenError  # spent meanwhile: of two uses, one wins
    user.password_hash = password_hash
    with row_required("user", user.id):
        await db.flush()
    await one_time.void(db, user.id, PASSWORD_RESET)
    events.record(events.PASSWORD_RESET, user_id=user.id)
    await sessions.revoke_all(db, user.id, reason="password_reset")
    return user


@public
async def request_verification(
    db: AsyncSession, user_id: uuid.UUID, *, settings: TokenSettings | None = None
) -> str:
    """Return a token that proves, once mailed back, that the user receives mail at their email.

    It lasts ``TOKEN_VERIFICATION_LIFETIME`` (3 days) and voids older ones; raise
    ``NotFoundError`` when there is no such user.
    """
    lifetime = (settings or one_time.default_settings()).verification_lifetime
    user_id = checked_uuid(user_id, field="user_id")
    token = await one_time.issue(db, user_id, EMAIL_VERIFICATION, lifetime)
    if token is None:
        raise NotFoundError("user", user_id)
    events.record(events.VERIFICATION_REQUESTED, user_id=user_id)
    return token


@public
async def verify_email(db: AsyncSession, token: str) -> User:
    """Spend a verification token and mark the user's email verified (``verified_at``).

    An unknown, expired, spent or voided token (a change of email voids them) raises
    ``InvalidTokenError``.
    """
    user_id = await one_time.spend(db, token, EMAIL_VERIFICATION)
    user = None if user_id is None else await db.get(User, user_id)
    if user is None:
        raise InvalidTokenError
    await db.refresh(user, ["verified_at"])
    if user.verified_at is None:
        user.verified_at = await db.scalar(select(func.now()))
        with row_required("user", user.id):
            await db.flush()
    events.record(events.EMAIL_VERIFIED, user_id=user.id)
    return user


@public
async def delete(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Erase the user; return whether there was one.

    Their sessions and one-time tokens go with them; their customers stay, with no owner (the
    schema's ``ON DELETE SET NULL``). Login counters, keyed by a hash of the email, are purged
    after ``THROTTLE_WINDOW``; security events already logged are the logs' to keep.
    """
    user_id = checked_uuid(user_id, field="user_id")
    result = await db.exec(
        sql_delete(User)
        .where(col(User.id) == user_id)
        .returning(col(User.id))
        .execution_options(synchronize_session="evaluate")
    )
    deleted = result.first() is not None
    if deleted:
        events.record(events.USER_DELETED, user_id=user_id)
    return deleted


@public
async def list(
    db: AsyncSession,
    *,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
) -> "Page[UserRow]":
    """Return a page of users ordered by (created_at, id), as read-only rows, as
    ``customers.list`` pages.

    ``search`` matches a part of the email or display name in any letter case (read in page
    order: meant for admin tools, not for tables of millions). A ``limit`` outside
    1..``MAX_PAGE_SIZE`` raises ``InvalidInputError``.
    """
    read = rows_to_read(limit)
    args: builtins.list[object] = []
    conditions = []
    if cursor is not None:
        args += decode_cursor(cursor)
        conditions.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
    if search:
        args.append(f"%{escape_like(search_term(search))}%")
        conditions.append(f"(email ILIKE ${len(args)} OR display_name ILIKE ${len(args)})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"{_SELECT_USERS} {where} ORDER BY created_at, id LIMIT {read:d}"
    found = await fastpath.fetch(db, sql, *args, read_only=True, record_class=_ROW)
    return page_of(cast("builtins.list[UserRow]", found), limit)


@runtime_checkable
class UserRow(rows.Row, Protocol):
    """A user in a page from ``list``: read-only, its columns read as attributes or keys.

    ``UserRead.model_validate(row)`` takes its values as they are. To change the user, ``get``
    it, or use this module's functions.
    """

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def verified_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


_PAGE_NAMES = tuple(name for name in _USER_NAMES if name != "password_hash")
_ROW = rows.record_class(User, _PAGE_NAMES)
_SELECT_USERS = f"SELECT {', '.join(_PAGE_NAMES)} FROM users"  # noqa: S608 - column names


@public
async def purge_tokens(
    db: AsyncSession, *, batch_size: int = DEFAULT_PURGE_BATCH, max_batches: int | None = None
) -> int:
    """Delete spent and expired one-time tokens in batches, as ``sessions.purge_expired`` does
    for sessions; return how many."""
    if batch_size < 1:
        raise InvalidInputError("must be at least 1", field="batch_size")
    return await one_time.purge_expired(db, batch_size=batch_size, max_batches=max_batches)
