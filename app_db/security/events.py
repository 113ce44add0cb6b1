"""Security events: one INFO record each on the logger ``app_db.security``.

A record's message names the event; its fields are attributes of the record (``extra``):
``event``, ``reason``, ``user_id``, ``session_id``, ``client_address``, ``user_agent``,
``retry_after`` and ``count``, each present when known. A record never holds a password, a
token, a hash or an email, and a value the client sent (the user agent) has its control
characters replaced, so it cannot forge a line of a text log. When an OpenTelemetry SDK
records spans, the event is also added to the current span (name, reason and user id only: the
address and user agent stay in the log).

The client's address and user agent come from the call that records the event, else from
``client(...)``, which a web layer enters once per request.
"""

import contextvars
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from app_db.observe import otel

logger = logging.getLogger("app_db.security")

LOGIN_SUCCEEDED = "login.succeeded"
LOGIN_FAILED = "login.failed"
LOGIN_THROTTLED = "login.throttled"
SESSION_ISSUED = "session.issued"
SESSION_ROTATED = "session.rotated"
SESSION_REVOKED = "session.revoked"
PASSWORD_CHANGED = "password.changed"  # noqa: S105  # pragma: allowlist secret
EMAIL_CHANGED = "email.changed"
USER_DEACTIVATED = "user.deactivated"
USER_DELETED = "user.deleted"
PASSWORD_RESET_REQUESTED = "password.reset_requested"  # noqa: S105  # pragma: allowlist secret
PASSWORD_RESET = "password.reset"  # noqa: S105  # pragma: allowlist secret
VERIFICATION_REQUESTED = "email.verification_requested"
EMAIL_VERIFIED = "email.verified"


@dataclass(frozen=True, slots=True)
class Client:
    """Who is asking: the address of the client (as the app sees it) and its user agent."""

    address: str | None = None
    user_agent: str | None = None


_NO_CLIENT = Client()
_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar(
    "app_db_client", default=None
)


@contextmanager
def client(address: str | None = None, user_agent: str | None = None) -> Iterator[Client]:
    """Attribute the events (and the login throttle) inside the block to this client."""
    entered = Client(address, user_agent)
    token = _client.set(entered)
    try:
        yield entered
    finally:
        _client.reset(token)


def current_client() -> Client:
    """Return the client of the enclosing ``client(...)`` block (empty outside one)."""
    return _client.get() or _NO_CLIENT


FIELD_MAX_LENGTH = 512
_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}


def _printable(value: str | None) -> str | None:
    """Return a client-supplied value without control characters (no forged log lines),
    at most ``FIELD_MAX_LENGTH`` characters."""
    if value is None:
        return None
    return value[:FIELD_MAX_LENGTH].translate(_CONTROL)


def record(
    event: str,
    *,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    reason: str | None = None,
    client: Client | None = None,
    retry_after: int | None = None,
    count: int | None = None,
) -> None:
    """Log one security event at INFO, and add it to the current span when spans are recorded."""
    logging_on = logger.isEnabledFor(logging.INFO)
    tracing_on = otel.tracing_on()
    if not logging_on and not tracing_on:
        return
    if logging_on:
        asking = client or current_client()
        fields = {
            "event": event,
            "reason": reason,
            "user_id": None if user_id is None else str(user_id),
            "session_id": None if session_id is None else str(session_id),
            "client_address": _printable(asking.address),
            "user_agent": _printable(asking.user_agent),
            "retry_after": retry_after,
            "count": count,
        }
        message = event if reason is None else f"{event} ({reason})"
        logger.info(message, extra={k: v for k, v in fields.items() if v is not None})
    if tracing_on:
        attributes = {"app_db.security.reason": reason, "user.id": user_id}
        otel.trace.get_current_span().add_event(
            f"app_db.security.{event}",
            {k: str(v) for k, v in attributes.items() if v is not None},
        )
