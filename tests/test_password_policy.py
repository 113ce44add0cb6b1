"""New passwords: common ones, the account's own name, and breached ones are refused.

The breach check is tried against a local stand-in for Have I Been Pwned's range API.
"""

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import InvalidInputError, UserCreate, users
from app_db.models import password as models_password
from app_db.models.password import common_passwords
from app_db.security import breach, policy
from tests.factories import make_user

COMMON = ["password", "12345678", "qwertyuiop", "iloveyou", "password1"]
BREACHED = "Tr0ub4dor&3 horse"
FINE = "a calm orange bicycle"


@pytest.mark.parametrize("password", [*COMMON, "PassWord1", "Password2024!", "iloveyou!!"])
def test_common_passwords_are_refused_at_sign_up(password: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UserCreate(email="ada@example.com", password=password)  # type: ignore[arg-type]

    (error,) = caught.value.errors(include_input=False)
    assert error["loc"] == ("password",)
    assert error["msg"] == f"Value error, {models_password.COMMON}"
    assert f"={password!r}" not in str(caught.value)


@pytest.mark.parametrize("password", COMMON)
async def test_common_passwords_are_refused_as_a_new_password(
    db_session: AsyncSession, password: str
) -> None:
    user = await make_user(db_session)

    with pytest.raises(InvalidInputError) as caught:
        await users.set_password(db_session, user.id, password)

    assert caught.value.field == "password"
    assert caught.value.details == [{"field": "password", "message": models_password.COMMON}]


def test_the_list_is_zxcvbns_and_passphrases_pass() -> None:
    assert len(common_passwords()) == 30_000
    for password in (FINE, "correct horse battery", "dragon2024!"):
        assert UserCreate(email="ada@example.com", password=password)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "password", ["Ada.Lovelace", "adalovelace1815", "ada.lovelace@example.com!!", "Countess Ada"]
)
async def test_the_accounts_own_email_or_name_is_refused(
    db_session: AsyncSession, password: str
) -> None:
    data = {"email": "Ada.Lovelace@example.com", "password": password}
    with pytest.raises(InvalidInputError) as caught:
        await users.create(db_session, {**data, "display_name": "Countess Ada"})  # type: ignore[arg-type]
    assert caught.value.field == "password"

    user = await users.create(db_session, UserCreate(email="ada@example.org", password=FINE))  # type: ignore[arg-type]
    user.display_name = "Countess Ada"
    with pytest.raises(InvalidInputError):
        await users.set_password(db_session, user.id, "countess ada 42")


class RangeAPI(BaseHTTPRequestHandler):
    """Answer ``GET /range/<prefix>`` as Have I Been Pwned does, padded with zero counts."""

    breached: frozenset[str] = frozenset({hashlib.sha1(BREACHED.encode()).hexdigest().upper()})  # noqa: S324
    paths: list[str] = []  # noqa: RUF012 - what the stand-in was asked
    delay = 0.0

    def do_GET(self) -> None:
        RangeAPI.paths.append(self.path)
        time.sleep(RangeAPI.delay)
        prefix = self.path.rpartition("/")[2].upper()
        lines = [f"{h[5:]}:{3861493}" for h in self.breached if h.startswith(prefix)]
        lines += [f"{n:035X}:0" for n in range(5)]  # padding
        body = "\r\n".join(lines).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: the slow case

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def range_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve the stand-in; turn the breach check on against it; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RangeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/range/"
    monkeypatch.setenv("PASSWORD_BREACH_CHECK", "app_db.security.breach:pwned_passwords")
    monkeypatch.setenv("PASSWORD_PWNED_URL", url)
    monkeypatch.setenv("PASSWORD_BREACH_TIMEOUT", "1")
    RangeAPI.paths.clear()
    RangeAPI.delay = 0.0
    for cached in (policy.default_settings, breach._settings):
        cached.cache_clear()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        for cached in (policy.default_settings, breach._settings):
            cached.cache_clear()


@pytest.mark.usefixtures("range_api")
async def test_a_breached_password_is_refused_and_only_a_prefix_leaves(
    db_session: AsyncSession,
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await users.create(db_session, UserCreate(email="ada@example.com", password=BREACHED))  # type: ignore[arg-type]
    assert caught.value.field == "password"
    assert "breach" in str(caught.value)

    user = await users.create(db_session, UserCreate(email="ada@example.com", password=FINE))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await users.set_password(db_session, user.id, BREACHED)

    digest = hashlib.sha1(BREACHED.encode()).hexdigest().upper()  # noqa: S324
    assert RangeAPI.paths[0] == f"/range/{digest[:5]}"
    assert all(len(path) == len("/range/") + 5 for path in RangeAPI.paths)


@pytest.mark.usefixtures("range_api")
async def test_an_unreachable_or_slow_check_accepts_the_password_and_warns(
    db_session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    # The stand-in answers after 6 s, the check gives up after PASSWORD_BREACH_TIMEOUT (1 s).
    # The sign-up then hashes the password (argon2, 64 MiB): up to seconds on a loaded CI
    # machine, so the bound leaves 3 s for it and still fails if the check waited for the answer.
    RangeAPI.delay = 6.0
    started = time.monotonic()
    user = await users.create(db_session, UserCreate(email="ada@example.com", password=BREACHED))  # type: ignore[arg-type]
    assert time.monotonic() - started < 4.0
    assert user.email == "ada@example.com"

    warnings = [r for r in caplog.records if r.name == "app_db.security"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "TimeoutError" in warnings[0].getMessage()
    assert BREACHED not in warnings[0].getMessage()
    caplog.clear()


async def always_breached(password: str) -> bool:  # noqa: ARG001 - a stand-in check
    """A breach check of an app's own, named by ``PASSWORD_BREACH_CHECK``."""
    return True


async def test_an_apps_own_check_is_named_by_the_setting(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSWORD_BREACH_CHECK", f"{__name__}:always_breached")
    policy.default_settings.cache_clear()
    try:
        with pytest.raises(InvalidInputError):
            await users.create(db_session, UserCreate(email="ada@example.com", password=FINE))  # type: ignore[arg-type]
    finally:
        monkeypatch.delenv("PASSWORD_BREACH_CHECK")
        policy.default_settings.cache_clear()
    assert await users.create(db_session, UserCreate(email="ada@example.com", password=FINE))  # type: ignore[arg-type]
