"""Users: sign-up, lookup, authentication and account changes.

Every function takes the ``AsyncSession`` first, flushes, and never commits.
"""

import uuid

from pydantic import SecretStr, TypeAdapter
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import coalesce, fastpath, sessions
from app_db.errors import InvalidInputError, NotFoundError, row_required, typed_errors
from app_db.models import User, UserCreate, UserUpdate
from app_db.models.types import EMAIL_MAX_LENGTH, normalize_email
from app_db.models.user import Password
from app_db.observe.spans import traced
from app_db.passwords import burn_verification, hash_password, needs_rehash, verify_password
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

    Raises ``DuplicateEmailError`` when the email is taken in any letter case. The insert runs
    in a savepoint, so the caller's transaction stays usable after that error.
    """
    data = validated(UserCreate, data)
    password_hash = await hash_password(data.password.get_secret_value())
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


@traced
@typed_errors
async def authenticate(db: AsyncSession, email: str, password: str | SecretStr) -> User | None:
    """Return the active user whose password matches, else ``None``.

    An unknown email costs one hash verification too, so timing does not reveal which emails
    exist. A hash made with older parameters is replaced by one with the current parameters
    (in a savepoint: a user deleted meanwhile gets ``None``, and the transaction stays usable).
    """
    plain = password.get_secret_value() if isinstance(password, SecretStr) else password
    lookup = _lookup_form(email)  # on the primary, never a replica: a new user logs in at once
    row = None if lookup is None else await coalesce.fetchrow(db, _BY_EMAIL, lookup)
    user = None if row is None else fastpath.load(db, User, row)
    if user is None:
        await burn_verification(plain)
        return None
    if not await verify_password(user.password_hash, plain) or not user.is_active:
        return None
    if needs_rehash(user.password_hash):
        password_hash = await hash_password(plain)
        try:
            async with db.begin_nested():
                db.add(user)
                user.password_hash = password_hash
        except StaleDataError:
            return None
    return user


@traced
@typed_errors
async def update(db: AsyncSession, user_id: uuid.UUID, data: UserUpdate) -> User:
    """Apply the fields set in ``data``; raise ``NotFoundError`` or ``DuplicateEmailError``.

    The change is written in a savepoint: after either error the transaction stays usable.
    """
    data = validated(UserUpdate, data)
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes and changes["email"] is None:
        raise InvalidInputError("email cannot be removed", field="email")
    user = await _require(db, user_id)
    with row_required("user", user_id):
        async with db.begin_nested():
            user.sqlmodel_update(changes)
    return user


@traced
@typed_errors
async def set_password(db: AsyncSession, user_id: uuid.UUID, password: str | SecretStr) -> None:
    """Replace the user's password hash. Other sessions stay valid: revoke them if needed.

    Raise ``NotFoundError`` when there is no such user, also when another transaction deleted
    it after this one loaded it (that failed write ends the transaction: roll it back).
    """
    secret = validated_value(_PASSWORD, password, field="password")
    user = await _require(db, user_id)
    user.password_hash = await hash_password(secret.get_secret_value())
    with row_required("user", user_id):
        await db.flush()


@traced
@typed_errors
async def deactivate(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Mark the user inactive and revoke all of their sessions; raise ``NotFoundError`` as
    ``set_password`` does."""
    user = await _require(db, user_id)
    user.is_active = False
    with row_required("user", user_id):
        await db.flush()
    await sessions.revoke_all(db, user_id)


async def _require(db: AsyncSession, user_id: uuid.UUID) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFoundError("user", user_id)
    return user
