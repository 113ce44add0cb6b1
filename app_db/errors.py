"""Typed errors raised by app_db in place of raw driver or SQLAlchemy exceptions.

Database errors are mapped by the name of the violated constraint (the naming convention
on the metadata makes these names exact), never by parsing message text.
"""

import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar

import asyncpg
from pydantic import ValidationError
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    EmulatedDBAPIException,
    IntegrityError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import (
    TimeoutError as PoolTimeout,
)
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from app_db.models import metadata

P = ParamSpec("P")
R = TypeVar("R")


class AppDBError(Exception):
    """Base class of every error app_db raises on purpose."""


class ConfigurationError(AppDBError, ValueError):
    """Raise when the settings are missing or invalid; the message names the variable."""


class InvalidInputError(AppDBError, ValueError):
    """Raise when input is refused; ``field`` and ``position`` say where, when known."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        position: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        where = []
        if position is not None:
            where.append(f"row {position}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.field = field
        self.position = position
        self.details = details or [{"field": field, "message": message}]

    @classmethod
    def from_validation(
        cls, error: ValidationError, *, position: int | None = None
    ) -> "InvalidInputError":
        """Build from a Pydantic error, keeping field names and messages but not the input."""
        details = [
            {
                "field": ".".join(str(part) for part in e["loc"]) or None,
                "message": e["msg"].removeprefix("Value error, "),
            }
            for e in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        first = details[0]
        return cls(str(first["message"]), field=first["field"], position=position, details=details)


class NotFoundError(AppDBError, LookupError):
    """Raise when the row an operation needs does not exist."""

    def __init__(self, entity: str, key: object = None) -> None:
        super().__init__(f"{entity} not found" if key is None else f"{entity} {key} not found")
        self.entity = entity
        self.key = key


class ConflictError(AppDBError):
    """Raise when a write clashes with a uniqueness or reference rule of the schema."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class DuplicateEmailError(ConflictError):
    """Raise when another user already has the email, compared case-insensitively."""


class ThrottledError(AppDBError):
    """Raise when an attempt is refused after too many failures; retry after ``retry_after`` s.

    It is refused before any password is checked, so it costs one round trip.
    """

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts: try again in {retry_after} s")
        self.retry_after = retry_after


class InvalidTokenError(AppDBError, ValueError):
    """Raise when a one-time token is unknown, expired, spent or voided (one error for all, so
    that an answer tells nothing about a token's past)."""

    def __init__(self) -> None:
        super().__init__("the link is not valid: it may have expired or been used already")


class DatabaseUnavailableError(AppDBError, ConnectionError):
    """Raise when the database cannot be reached or dropped the connection; retry later."""


class FencedServerError(DatabaseUnavailableError):
    """Raise when a server is on an older timeline of its cluster than one seen before.

    That is a former primary after a failover (a split brain); it is refused, never written to.
    """


class PoolTimeoutError(AppDBError, TimeoutError):
    """Raise when no pooled connection became free within ``DATABASE_POOL_TIMEOUT``."""


class StatementTimeoutError(AppDBError, TimeoutError):
    """Raise when the server cancelled a statement (``statement_timeout``, SQLSTATE 57014)."""


def violated_constraint(error: BaseException) -> str | None:
    """Return the name of the constraint a database error violated, read from the driver."""
    driver_error = getattr(error, "driver_exception", None) or getattr(
        getattr(error, "orig", None), "driver_exception", None
    )
    name = getattr(driver_error, "constraint_name", None) or getattr(error, "constraint_name", None)
    return name if isinstance(name, str) else None


def _check_field(constraint: str) -> str | None:
    """Return the column a check constraint guards: its name is ``ck_<table>_<column>...``."""
    return _named_column(constraint, "ck")


_BY_CONSTRAINT: dict[str, Callable[[str], AppDBError]] = {
    "uq_users_email_lower": lambda name: DuplicateEmailError(
        "a user with this email already exists", constraint=name
    ),
    "uq_sessions_token_hash": lambda name: ConflictError(
        "session token collision", constraint=name
    ),
    "fk_sessions_user_id_users": lambda _: NotFoundError("user"),
    "uq_one_time_tokens_token_hash": lambda name: ConflictError(
        "one-time token collision", constraint=name
    ),
    "fk_one_time_tokens_user_id_users": lambda _: NotFoundError("user"),
    "fk_customers_owner_id_users": lambda _: InvalidInputError(
        "no user has this id", field="owner_id"
    ),
}


def error_for_constraint(constraint: str | None) -> AppDBError | None:
    """Return the typed error for a violated constraint, or ``None`` for an unknown one.

    Beyond app_db's own, any table on ``app_db.models.metadata`` gets one by the naming
    convention: a check (``ck_<table>_<column>...``) or a foreign key (``fk_<table>_<column>_
    <referred>``) names its column as the field of an ``InvalidInputError``; a unique
    constraint (``uq_<table>_<column>``) is a ``ConflictError``.
    """
    if constraint is None:
        return None
    build = _BY_CONSTRAINT.get(constraint)
    if build is not None:
        return build(constraint)
    field = _check_field(constraint)
    if field is not None:
        return InvalidInputError(f"violates {constraint}", field=field)
    referring = _named_column(constraint, "fk")
    if referring is not None:
        return InvalidInputError("refers to a row that does not exist", field=referring)
    if _named_column(constraint, "uq") is not None:
        return ConflictError("a row with this value already exists", constraint=constraint)
    return None


def _integrity(error: BaseException, driver_error: BaseException) -> AppDBError | None:
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate == _NOT_NULL:
        return InvalidInputError(
            "must not be null", field=getattr(driver_error, "column_name", None)
        )
    constraint = violated_constraint(error)
    if _still_referenced(error, sqlstate, constraint):
        return ConflictError("the row is still referenced", constraint=constraint)
    return error_for_constraint(constraint)


def _still_referenced(error: BaseException, sqlstate: object, constraint: str | None) -> bool:
    """Return whether a foreign key refused a DELETE: the row is still referenced."""
    statement = str(getattr(error, "statement", "") or "").lstrip().upper()
    return sqlstate == _FOREIGN_KEY and constraint is not None and statement.startswith("DELETE")


def _named_column(constraint: str, kind: str) -> str | None:
    """Return the first column of a constraint named ``<kind>_<table>_<column>...``."""
    for table in metadata.sorted_tables:
        rest = constraint.removeprefix(f"{kind}_{table.name}_")
        if rest != constraint:
            names = [c for c in table.columns.keys() if rest.startswith(c)]  # noqa: SIM118
            return max(names, key=len) if names else None
    return None


_CANCELED = "57014"
_FOREIGN_KEY = "23503"
_UNIQUE = "23505"
_NOT_NULL = "23502"
DISCONNECTS: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError,
    OSError,
)
"""What a call into the driver raises when its connection is gone or was never made.

``OSError`` (``ConnectionError`` and ``TimeoutError`` among them) is the socket's error, but
outside a driver call it may be anyone's: ``raised_by_driver`` tells them apart.
"""

_ROW_GONE = (StaleDataError, ObjectDeletedError)
_REFUSED_CLASSES = ("08", "28")  # connection exception; invalid authorization (password, role)
_REFUSED = frozenset({"3D000", "53300", "57P01", "57P02", "57P03"})
"""SQLSTATEs of a server that refused or dropped the connection: unknown database, too many
connections, shutdown, crash, starting up."""

_TRANSLATED: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    EmulatedDBAPIException,  # what the pool raises itself, outside a Connection
    asyncpg.PostgresError,
    *DISCONNECTS,
)

_DRIVERS = frozenset({"asyncpg", "sqlalchemy"})
_BELOW_DRIVERS = sys.stdlib_module_names | {"uvloop"}
"""Packages the drivers call for I/O: an error raised there belongs to whoever called them."""


def raised_by_driver(error: BaseException) -> bool:
    """Return whether asyncpg or SQLAlchemy raised ``error``, not the caller's own code.

    The innermost frame of the traceback outside the standard library and the event loop
    decides: a refused or timed-out connect raised in ``asyncio`` for asyncpg counts as the
    driver's, while the same error raised for the caller's HTTP client, file or
    ``asyncio.timeout`` (even while a driver iterates the caller's rows) does not.
    """
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    for frame in reversed(frames):
        package = str(frame.f_globals.get("__name__") or "").partition(".")[0]
        if package not in _BELOW_DRIVERS:
            return package in _DRIVERS
    return False


PGBOUNCER_HINT = (
    " (a PgBouncer in transaction mode refuses asyncpg's startup and prepared statements:"
    " set DATABASE_PGBOUNCER=true)"
)


def hint(driver_error: BaseException) -> str:
    """Return what to do about an error whose fix is a setting, or ``""``.

    asyncpg's ``ProtocolViolationError`` at connect is what a PgBouncer in transaction mode
    answers to ``statement_timeout`` as a startup parameter.
    """
    return PGBOUNCER_HINT if isinstance(driver_error, asyncpg.ProtocolViolationError) else ""


def _driver_error(error: BaseException) -> BaseException:
    """Return the asyncpg exception behind a SQLAlchemy error or its emulated DBAPI error."""
    emulated = error if isinstance(error, EmulatedDBAPIException) else getattr(error, "orig", None)
    return getattr(emulated, "driver_exception", None) or error


def _refused(driver_error: BaseException) -> bool:
    sqlstate = getattr(driver_error, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate.startswith(_REFUSED_CLASSES) or sqlstate in _REFUSED
    )


def typed_error(error: BaseException) -> AppDBError | None:  # noqa: PLR0911 - one per kind
    """Return the app_db error for an expected database failure, or ``None`` for others.

    An ``OSError`` is a database failure only when the driver raised it (``raised_by_driver``).
    """
    if isinstance(error, AppDBError):
        return error
    if isinstance(error, OSError):
        if not raised_by_driver(error):
            return None
        if isinstance(error, TimeoutError):
            return DatabaseUnavailableError(
                "database gave no answer in time (DATABASE_CONNECT_TIMEOUT or "
                "DATABASE_COMMAND_TIMEOUT)"
            )
        return DatabaseUnavailableError(f"database unreachable: {type(error).__name__}")
    driver_error = _driver_error(error)
    if isinstance(error, IntegrityError | asyncpg.IntegrityConstraintViolationError):
        return _integrity(error, driver_error)
    if isinstance(error, _ROW_GONE):
        return NotFoundError("row")
    if isinstance(error, PoolTimeout):
        return PoolTimeoutError("no pooled connection became free within the pool timeout")
    if getattr(driver_error, "sqlstate", None) == _CANCELED:
        return StatementTimeoutError("the server cancelled the statement (statement_timeout)")
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return DatabaseUnavailableError("the database connection was lost")
    if isinstance(driver_error, DISCONNECTS) or _refused(driver_error):
        kind = type(driver_error).__name__
        return DatabaseUnavailableError(f"database unreachable: {kind}{hint(driver_error)}")
    if isinstance(error, DataError | asyncpg.DataError):
        return InvalidInputError("value not accepted by the database")
    if isinstance(error, StatementError) and isinstance(error.orig, ValueError):
        return InvalidInputError(str(error.orig))
    return None


class _Translated:
    """Context manager that re-raises expected database failures as app_db's typed errors."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> Literal[False]:
        if error is not None:
            raise_translated(error)
        return False


def raise_translated(error: BaseException) -> None:
    """Raise the typed error for ``error`` from it, if it has one (see ``translated``)."""
    typed = translated(error)
    if typed is not None:
        raise typed from error


def translated(error: BaseException) -> BaseException | None:
    """Return the typed error that ``translated_errors`` raises for ``error`` (``None``: none)."""
    if not isinstance(error, _TRANSLATED) or isinstance(error, AppDBError):
        return None
    return typed_error(error)


_TRANSLATED_ERRORS = _Translated()


def translated_errors() -> _Translated:
    """Turn expected database failures raised inside the block into app_db's typed errors."""
    return _TRANSLATED_ERRORS


class _RowRequired:
    """Context manager that reports a row deleted by another transaction as ``NotFoundError``."""

    __slots__ = ("_entity", "_key")

    def __init__(self, entity: str, key: object) -> None:
        self._entity = entity
        self._key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> Literal[False]:
        if isinstance(error, _ROW_GONE):
            raise NotFoundError(self._entity, self._key) from error
        return False


def row_required(entity: str, key: object) -> _RowRequired:
    """Raise ``NotFoundError(entity, key)`` when the block finds its row deleted meanwhile.

    A row loaded earlier in the transaction can be deleted by another one before this one
    writes it; the ORM then raises ``StaleDataError`` on flush.
    """
    return _RowRequired(entity, key)


def typed_errors(
    function: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Make an API coroutine raise app_db's typed errors for expected database failures."""

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _TRANSLATED_ERRORS:
            return await function(*args, **kwargs)

    return wrapper
