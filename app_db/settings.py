"""Database settings, read from the environment and an optional ``.env`` file."""

import ssl
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    Field,
    FilePath,
    ImportString,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app_db.cluster import hosts
from app_db.errors import ConfigurationError

SSLMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

ASYNC_DRIVER = "postgresql+asyncpg"
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})
_SSL_QUERY_KEYS = ("sslmode", "ssl", "sslrootcert")
COMMAND_TIMEOUT_MARGIN = 2.0
"""Seconds the client waits beyond ``statement_timeout``: the server cancels first."""
MAX_SESSIONS_PER_USER = 10_000
"""The highest ``SESSION_MAX_PER_USER`` allowed."""


class Settings(BaseSettings):
    """Connection and pool settings; each field is read from the upper-case variable of its name.

    Give either ``DATABASE_URL`` or the parts ``POSTGRES_HOST``, ``POSTGRES_PORT``,
    ``POSTGRES_USER``, ``POSTGRES_PASSWORD`` and ``POSTGRES_DB``. A database on several hosts
    is given as libpq does (``h1:5440,h2:5441`` in the URL, or comma lists in the parts) or in
    SQLAlchemy's query form (``?host=h1:5440&host=h2:5441``). Secrets are ``SecretStr`` and
    validation errors never echo their input.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="`postgres://` or `postgresql://` URL; the asyncpg driver is always used. "
        "Several hosts (`u@h1:5440,h2:5441/db` or `?host=h1:5440&host=h2:5441`) are tried in "
        "order, each within `DATABASE_CONNECT_TIMEOUT`, for a read-write server unless "
        "`?target_session_attrs=` says otherwise",
    )
    database_read_url: SecretStr | None = Field(
        default=None,
        description="a hot standby: `users.get_by_email` and `customers.list` read there, "
        "unless the transaction asks for the primary or for a position the standby has not "
        "replayed yet, or its lag exceeds `DATABASE_READ_MAX_LAG`, or it fails to answer; "
        "`sessions.validate`, `users.authenticate`, `users.get`, `customers.get` and reads "
        "after a write always read the primary",
    )
    postgres_host: str | None = Field(
        default=None,
        description="host, when `DATABASE_URL` is not set (required then); several as `h1,h2`",
    )
    postgres_port: int | str = Field(
        default=5432, description="port; one for each host as `5440,5441`, or one for all"
    )
    postgres_user: str | None = Field(
        default=None, description="user (required without `DATABASE_URL`)"
    )
    postgres_password: SecretStr | None = Field(
        default=None, description="password; held as a secret, never shown"
    )
    postgres_db: str | None = Field(
        default=None, description="database (required without `DATABASE_URL`)"
    )

    database_pool_size: int = Field(default=10, ge=1, description="connections kept in the pool")
    database_max_overflow: int = Field(
        default=5, ge=0, description="extra connections opened under load"
    )
    database_pool_overflow_idle: float = Field(
        default=60.0,
        ge=0,
        description="seconds an extra connection may stay open unused before it closes (`0`: "
        "it closes as soon as it is given back, as SQLAlchemy's pool does)",
    )
    database_pool_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for a free connection"
    )
    database_pool_recycle: int = Field(
        default=1800,
        ge=-1,
        description="seconds after which a connection is replaced (`-1`: never)",
    )
    database_pool_pre_ping: bool = Field(
        default=False,
        description="SQLAlchemy's full ping on checkout (BEGIN + ROLLBACK, two round trips); "
        "without it, app_db still replaces on checkout, at no cost, any connection the driver "
        "saw the server close",
    )
    database_statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="server-side `statement_timeout` (`0`: the server's default)",
    )
    database_connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for a new connection"
    )
    database_application_name: str = Field(
        default="app_db",
        max_length=63,
        description="`application_name` seen in `pg_stat_activity`",
    )
    database_sslmode: SSLMode | None = Field(
        default=None,
        description="`disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full`; "
        "also read from `?sslmode=` in the URL",
    )
    database_sslrootcert: FilePath | None = Field(
        default=None,
        description="CA file for `verify-ca` / `verify-full`; also read from `?sslrootcert=`",
    )
    database_echo: bool = Field(
        default=False, description="log SQL statements (parameters are never logged)"
    )
    database_pgbouncer: bool = Field(
        default=False, description="safe behind PgBouncer in transaction mode"
    )
    database_read_retry_interval: float = Field(
        default=10.0,
        gt=0,
        description="seconds before reads try an unreachable replica again",
    )
    database_read_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds a read waits for the replica (a turn at its pool, a connection, "
        "the answer); then it reads the primary and the replica counts as down",
    )
    database_read_max_lag: timedelta | None = Field(
        default=timedelta(seconds=10),
        description="the replica serves reads only while it has provably replayed every "
        "commit older than this (seconds or ISO 8601; measured from WAL positions at most "
        "once a second while reads come, never per read); `off`: no bound",
    )
    database_command_timeout: float | None = Field(
        default=None,
        gt=0,
        description="seconds the client waits for any one answer from the server before it "
        "drops the connection (a hung server then fails as `DatabaseUnavailableError`); "
        "unset: `DATABASE_STATEMENT_TIMEOUT_MS` plus 2 s, none when that is `0`",
    )
    database_tcp_user_timeout: float = Field(
        default=10.0,
        ge=0,
        description="on TCP connections, keepalive probes after this many idle seconds and "
        "`TCP_USER_TIMEOUT`: a peer that stops acknowledging (a dead host, a cut network) "
        "is dropped within about twice this; `0`: the OS defaults",
    )
    database_coalesce_max_batch: int = Field(
        default=64,
        ge=0,
        le=10_000,
        description="concurrent lookups by key (`sessions.validate`, `get_by_email`, "
        "`users.get`, `customers.get`) sent as one statement, at most this many a batch; "
        "`0` turns it off (always off behind PgBouncer)",
    )
    database_slow_statement_ms: int | None = Field(
        default=None,
        ge=1,
        description="log at WARNING (logger `app_db.slow`) each statement slower than this, "
        "with the app_db call it served and its duration, never its parameters; unset: off",
    )

    @field_validator("postgres_port", mode="before")
    @classmethod
    def _ports(cls, value: object) -> int | str:
        text = str(value).strip()
        ports = [port.strip() for port in text.split(",")]
        if not all(port.isdigit() and 1 <= int(port) <= 65535 for port in ports):
            raise ValueError("a port is a number from 1 to 65535; several are comma-separated")
        return int(ports[0]) if len(ports) == 1 else ",".join(ports)

    @field_validator("database_read_max_lag", mode="before")
    @classmethod
    def _seconds_or_off(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text == "off":
            return None
        try:
            return float(text)  # seconds, as the other timeouts are given
        except ValueError:
            return value  # ISO 8601 (PT0.5S), or refused as a duration

    @model_validator(mode="after")
    def _require_a_database(self) -> "Settings":
        self.sqlalchemy_url()
        self._ssl_arg()
        if self.database_read_url is not None:
            _parse_database_url(self.database_read_url.get_secret_value(), "DATABASE_READ_URL")
        if self.database_read_max_lag is not None and self.database_read_max_lag <= timedelta(0):
            raise ValueError("DATABASE_READ_MAX_LAG must be positive")
        return self

    def command_timeout(self) -> float | None:
        """Return the client-side bound on each answer, in seconds (``None``: no bound)."""
        if self.database_command_timeout is not None:
            return self.database_command_timeout
        if not self.database_statement_timeout_ms:
            return None
        return self.database_statement_timeout_ms / 1000 + COMMAND_TIMEOUT_MARGIN

    def read_settings(self) -> "Settings | None":
        """Return settings for the read replica (``DATABASE_READ_URL``), or ``None``."""
        if self.database_read_url is None:
            return None
        return self.model_copy(
            update={"database_url": self.database_read_url, "database_read_url": None}
        )

    def sqlalchemy_url(self) -> URL:
        """Return the asyncpg URL, without any SSL query options (they go to ``connect_args``)."""
        if self.database_url is not None:
            url = _parse_database_url(self.database_url.get_secret_value())
        else:
            url = self._url_from_parts()
        url = url.difference_update_query(_SSL_QUERY_KEYS)
        if self.database_pgbouncer:
            url = url.update_query_dict({"prepared_statement_cache_size": "0"})
        return url

    def _url_from_parts(self) -> URL:
        missing = [
            name
            for name, value in (
                ("POSTGRES_HOST", self.postgres_host),
                ("POSTGRES_USER", self.postgres_user),
                ("POSTGRES_DB", self.postgres_db),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                "no database configured: set DATABASE_URL, or POSTGRES_HOST, POSTGRES_USER and "
                f"POSTGRES_DB (missing: {', '.join(missing)})"
            )
        password = self.postgres_password
        url = URL.create(
            ASYNC_DRIVER,
            username=self.postgres_user,
            password=password.get_secret_value() if password is not None else None,
            database=self.postgres_db,
        )
        names = [name.strip() for name in (self.postgres_host or "").split(",")]
        ports = [int(port) for port in str(self.postgres_port).split(",")]
        if len(ports) == 1:
            ports *= len(names)
        if len(ports) != len(names):
            raise ValueError(f"POSTGRES_PORT gives {len(ports)} ports for {len(names)} hosts")
        if len(names) == 1:
            return url.set(host=names[0], port=ports[0])
        listed = [f"{name}:{port}" for name, port in zip(names, ports, strict=True)]
        return hosts.canonical(url.update_query_dict({"host": listed}), "POSTGRES_HOST")

    def sslmode(self) -> SSLMode | None:
        """Return the SSL mode: ``DATABASE_SSLMODE``, else ``sslmode`` in ``DATABASE_URL``."""
        if self.database_sslmode is not None:
            return self.database_sslmode
        mode = self._url_query("sslmode") or self._url_query("ssl")
        if mode is None:
            return None
        for known in get_args(SSLMode):
            if mode == known:
                return known  # type: ignore[no-any-return]
        raise ValueError("DATABASE_URL: sslmode must be one of " + ", ".join(get_args(SSLMode)))

    def sslrootcert(self) -> Path | None:
        """Return the CA file from ``DATABASE_SSLROOTCERT``, else from ``DATABASE_URL``."""
        if self.database_sslrootcert is not None:
            return Path(self.database_sslrootcert)
        path = self._url_query("sslrootcert")
        return Path(path) if path else None

    def _url_query(self, key: str) -> str | None:
        if self.database_url is None:
            return None
        value = _parse_database_url(self.database_url.get_secret_value()).query.get(key)
        if isinstance(value, tuple):
            raise ValueError(f"DATABASE_URL: {key} is given more than once")
        return value

    def connect_args(self) -> dict[str, Any]:
        """Return the keyword arguments that asyncpg's ``connect()`` receives.

        Behind PgBouncer in transaction mode (``DATABASE_PGBOUNCER``), asyncpg's statement
        cache is off, SQLAlchemy names each prepared statement uniquely, and
        ``statement_timeout`` is not sent at connect time (PgBouncer refuses unknown startup
        parameters): set it on the role instead (``ALTER ROLE app SET statement_timeout``).
        """
        server_settings = {"application_name": self.database_application_name}
        if self.database_statement_timeout_ms and not self.database_pgbouncer:
            server_settings["statement_timeout"] = str(self.database_statement_timeout_ms)
        args: dict[str, Any] = {
            "server_settings": server_settings,
            "timeout": self.database_connect_timeout,
            "command_timeout": self.command_timeout(),
        }
        ssl_arg = self._ssl_arg()
        if ssl_arg is not None:
            args["ssl"] = ssl_arg
        if self.database_pgbouncer:
            args["statement_cache_size"] = 0
            args["prepared_statement_name_func"] = _unique_statement_name
        return args

    def _ssl_arg(self) -> str | ssl.SSLContext | None:
        mode = self.sslmode()
        rootcert = self.sslrootcert()
        if mode in ("verify-ca", "verify-full") and rootcert is not None:
            if not rootcert.is_file():
                raise ValueError("DATABASE_SSLROOTCERT: no such file")
            context = ssl.create_default_context(cafile=rootcert)
            context.check_hostname = mode == "verify-full"
            return context
        return mode


def _unique_statement_name() -> str:
    return f"__app_db_{uuid.uuid4().hex}__"


def _parse_database_url(raw: str, variable: str = "DATABASE_URL") -> URL:
    try:
        url = make_url(hosts.from_libpq(raw, variable))
    except (ArgumentError, ValueError) as exc:
        if str(exc).startswith(variable):
            raise ValueError(str(exc)) from None
        raise ValueError(f"{variable} is not a valid URL") from None
    scheme, _, driver = url.drivername.partition("+")
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"{variable} must start with postgres:// or postgresql://, not {scheme}://"
        )
    if driver not in ("", "asyncpg"):
        raise ValueError(f"{variable} names the driver {driver!r}; app_db uses asyncpg")
    return hosts.canonical(url.set(drivername=ASYNC_DRIVER), variable)


def _prefixed(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )


class SessionSettings(BaseSettings):
    """Login-session lifetimes, from ``SESSION_*`` variables (seconds or ISO 8601 durations).

    A session expires after ``SESSION_IDLE_TIMEOUT`` without use, and at the latest
    ``SESSION_MAX_LIFETIME`` after it was issued. ``last_seen_at`` and the sliding expiry are
    written at most once per ``SESSION_TOUCH_INTERVAL``.
    """

    model_config = _prefixed("SESSION_")

    idle_timeout: timedelta = Field(
        default=timedelta(days=7), description="a session expires after this long without use"
    )
    max_lifetime: timedelta = Field(
        default=timedelta(days=30), description="and at the latest this long after it was issued"
    )
    touch_interval: timedelta = Field(
        default=timedelta(minutes=5),
        description="`last_seen_at` and the sliding expiry are written at most this often",
    )
    max_per_user: int = Field(
        default=10,
        ge=0,
        le=MAX_SESSIONS_PER_USER,
        description="live sessions one user may hold; a new one revokes the oldest beyond it "
        "(`0`: no cap)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "SessionSettings":
        if min(self.idle_timeout, self.max_lifetime, self.touch_interval) <= timedelta(0):
            raise ValueError("SESSION_* durations must be positive")
        if self.idle_timeout > self.max_lifetime:
            raise ValueError("SESSION_IDLE_TIMEOUT must not exceed SESSION_MAX_LIFETIME")
        if self.touch_interval >= self.idle_timeout:
            raise ValueError("SESSION_TOUCH_INTERVAL must be shorter than SESSION_IDLE_TIMEOUT")
        return self


class PasswordSettings(BaseSettings):
    """Password hashing, from ``PASSWORD_*`` variables.

    ``PASSWORD_HASH_CONCURRENCY`` bounds the argon2 hashes and verifications that run at once.
    Each holds 64 MiB while it runs, so the default of 4 caps a burst of logins at 256 MiB,
    on any number of cores; the requests beyond it wait their turn.
    """

    model_config = _prefixed("PASSWORD_")

    hash_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="argon2 hashes and verifications running at once (64 MiB each); "
        "the others wait; one client network gets at most half of them",
    )
    breach_check: ImportString[Callable[[str], Awaitable[bool]]] | None = Field(
        default=None,
        description="`module:name` of an async function that says whether a password appeared "
        "in a breach, asked at sign-up and password change; "
        "`app_db.security.breach:pwned_passwords` asks Have I Been Pwned; unset: off",
    )
    pwned_url: str = Field(
        default="https://api.pwnedpasswords.com/range/",
        description="the range API that `pwned_passwords` asks (the first 5 hex digits of the "
        "password's SHA-1 are appended; the password never leaves)",
    )
    breach_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="seconds the breach check may take; after that, or on any error, the "
        "password is accepted and a WARNING logged on `app_db.security`",
    )


class ThrottleSettings(BaseSettings):
    """Failed-login limits, from ``THROTTLE_*`` variables (durations: seconds or ISO 8601).

    Failures are counted in PostgreSQL per account and client network, and per network for
    all accounts together. Past its free failures, a counter makes the next attempt wait
    ``THROTTLE_BASE_DELAY``, doubling with each further failure up to ``THROTTLE_MAX_DELAY``.
    A success resets the account's counter for that network. A counter starts over after
    ``THROTTLE_WINDOW`` without an attempt, and is purged after it.
    """

    model_config = _prefixed("THROTTLE_")

    account_free_failures: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="failed logins to one account from one network before delays begin",
    )
    network_free_failures: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="failed logins from one network, all accounts together, before delays begin",
    )
    base_delay: timedelta = Field(
        default=timedelta(seconds=1), description="the first delay; each failure doubles it"
    )
    max_delay: timedelta = Field(default=timedelta(minutes=15), description="the longest delay")
    window: timedelta = Field(
        default=timedelta(days=1),
        description="a counter with no attempt for this long starts over (and may be purged)",
    )
    ipv4_prefix: int = Field(
        default=24, ge=8, le=32, description="an IPv4 client's network: its `/24` by default"
    )
    ipv6_prefix: int = Field(
        default=64, ge=16, le=128, description="an IPv6 client's network: its `/64` by default"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ThrottleSettings":
        if min(self.base_delay, self.max_delay, self.window) <= timedelta(0):
            raise ValueError("THROTTLE_* durations must be positive")
        if self.base_delay > self.max_delay:
            raise ValueError("THROTTLE_BASE_DELAY must not exceed THROTTLE_MAX_DELAY")
        if self.max_delay > self.window:
            raise ValueError("THROTTLE_MAX_DELAY must not exceed THROTTLE_WINDOW")
        return self


class TokenSettings(BaseSettings):
    """One-time token lifetimes, from ``TOKEN_*`` variables (seconds or ISO 8601 durations)."""

    model_config = _prefixed("TOKEN_")

    reset_lifetime: timedelta = Field(
        default=timedelta(minutes=30),
        gt=timedelta(0),
        description="a password reset token expires this long after it was issued",
    )
    verification_lifetime: timedelta = Field(
        default=timedelta(days=3),
        gt=timedelta(0),
        description="an email verification token expires this long after it was issued",
    )


def load_token_settings(**values: Any) -> TokenSettings:
    """Read the token settings, raising ``ConfigurationError`` that names the variable."""
    try:
        return TokenSettings(**values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix="TOKEN_")) from None


def load_throttle_settings(**values: Any) -> ThrottleSettings:
    """Read the throttle settings, raising ``ConfigurationError`` that names the variable."""
    try:
        return ThrottleSettings(**values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix="THROTTLE_")) from None


def load_password_settings(**values: Any) -> PasswordSettings:
    """Read the password settings, raising ``ConfigurationError`` that names the variable."""
    try:
        return PasswordSettings(**values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix="PASSWORD_")) from None


def load_settings(**values: Any) -> Settings:
    """Read the settings, raising ``ConfigurationError`` that names each bad variable."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def load_session_settings(**values: Any) -> SessionSettings:
    """Read the session settings, raising ``ConfigurationError`` that names each bad variable."""
    try:
        return SessionSettings(**values)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, prefix="SESSION_")) from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        variable = ".".join(str(part) for part in error["loc"]).upper()
        variable = f"{prefix}{variable}" if variable else ""
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}" if variable else message)
    return "invalid settings: " + "; ".join(problems)
