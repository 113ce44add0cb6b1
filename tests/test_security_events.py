"""Security events on the logger ``app_db.security``: what happened, to whom, from where.

Never a password, a token, a hash or an email.
"""

import logging
from collections.abc import Iterator

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import ThrottledError, UserUpdate, sessions, users
from app_db.security.events import client
from app_db.security.tokens import hash_token
from tests.factories import PASSWORD, make_user, password_hash
from tests.telemetry import Telemetry

ADDRESS = "203.0.113.7"
AGENT = "Mozilla/5.0 (test)"
FIELDS = ("event", "reason", "user_id", "session_id", "client_address", "user_agent")


class Events:
    """The records of ``app_db.security`` during the test."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter([r for r in self._caplog.records if r.name == "app_db.security"])

    def __getitem__(self, index: int) -> logging.LogRecord:
        return list(self)[index]


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Events:
    caplog.set_level(logging.INFO, logger="app_db.security")
    return Events(caplog)


def fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


def secrets_in(records: Events, secrets: list[str]) -> list[str]:
    texts = [str(vars(record)) for record in records] + [r.getMessage() for r in records]
    return [secret for secret in secrets for text in texts if secret in text]


async def test_logins_leave_one_event_each(db_session: AsyncSession, events: Events) -> None:
    user = await make_user(db_session, "ada@example.com")
    gone = await make_user(db_session, "gone@example.com", active=False)
    wrong = "Wrong-Passw0rd-Xq"

    with client(ADDRESS, AGENT):
        await users.authenticate(db_session, "ada@example.com", PASSWORD)
        await users.authenticate(db_session, "ada@example.com", wrong)
        await users.authenticate(db_session, "nobody@example.com", wrong)
        await users.authenticate(db_session, "gone@example.com", PASSWORD)
        for _ in range(6):  # five free failures in all, one that starts a delay, a refusal
            try:
                await users.authenticate(db_session, "ada@example.com", wrong)
            except ThrottledError:
                break

    outcomes = [(r.getMessage(), getattr(r, "user_id", None)) for r in events]
    assert outcomes[:4] == [
        ("login.succeeded", str(user.id)),
        ("login.failed (wrong_password)", str(user.id)),
        ("login.failed (unknown_email)", None),
        ("login.failed (inactive)", str(gone.id)),
    ]
    assert outcomes[-1] == ("login.throttled", None)
    assert events[-1].retry_after == 1  # type: ignore[attr-defined]
    assert {(r.client_address, r.user_agent) for r in events} == {(ADDRESS, AGENT)}  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO for r in events)
    assert (
        secrets_in(events, [PASSWORD, wrong, "ada@example.com", "nobody@", password_hash()]) == []
    )


async def test_sessions_and_account_changes_leave_events(
    db_session: AsyncSession, events: Events
) -> None:
    user = await make_user(db_session, "ada@example.com")
    token, session = await sessions.issue(db_session, user.id, ip=ADDRESS, user_agent=AGENT)
    other, _ = await sessions.issue(db_session, user.id)
    rotated = await sessions.rotate(db_session, token)
    assert rotated is not None
    new_token, new_session = rotated
    await sessions.revoke(db_session, new_token)
    third, third_session = await sessions.issue(db_session, user.id)
    await sessions.revoke_by_id(db_session, user.id, third_session.id)
    await users.set_password(db_session, user.id, "a brand new passphrase")
    await users.update(db_session, user.id, UserUpdate(email="ada.l@example.com"))
    await users.deactivate(db_session, user.id)

    seen = [fields(r) for r in events]
    issued = {"event": "session.issued", "user_id": str(user.id)}
    assert seen[0] == {
        **issued,
        "session_id": str(session.id),
        "client_address": ADDRESS,
        "user_agent": AGENT,
    }
    assert [(f["event"], f.get("reason"), f.get("session_id")) for f in seen[1:]] == [
        ("session.issued", None, seen[1]["session_id"]),
        ("session.issued", None, str(new_session.id)),
        ("session.rotated", None, str(session.id)),
        ("session.revoked", "logout", str(new_session.id)),
        ("session.issued", None, str(third_session.id)),
        ("session.revoked", "by_id", str(third_session.id)),
        ("password.changed", None, None),
        ("session.revoked", "password_changed", seen[8].get("session_id")),
        ("email.changed", None, None),
        ("user.deactivated", None, None),
    ]
    assert all(f["user_id"] == str(user.id) for f in seen)
    tokens = [token, other, new_token, third]
    hashes = [hash_token(t).hex() for t in tokens] + [str(hash_token(t)) for t in tokens]
    assert secrets_in(events, [*tokens, *hashes, "a brand new passphrase", "@example.com"]) == []


async def test_events_are_span_events_too(db_session: AsyncSession, telemetry: Telemetry) -> None:
    user = await make_user(db_session, "ada@example.com")

    await users.authenticate(db_session, "ada@example.com", "not the password", ip=ADDRESS)

    (span,) = [s for s in telemetry.finished() if s.name == "app_db.users.authenticate"]
    (event,) = span.events
    assert event.name == "app_db.security.login.failed"
    assert dict(event.attributes or {}) == {
        "app_db.security.reason": "wrong_password",
        "user.id": str(user.id),
    }
