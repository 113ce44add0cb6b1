"""Password reset and email verification over HTTP, with the example's logging "mailer"."""

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import ExampleSettings, create_app
from tests.test_example_app import PASSWORD, sign_up_and_log_in
from tests.web import asgi_client

BASE = "https://shop.example.com"
NEW = "a brand new passphrase"


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(db_sessionmaker, ExampleSettings(_env_file=None, public_url=BASE))
    async with asgi_client(app, BASE) as c:
        yield c


@pytest.fixture
def mails(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="app_db.example.mail")
    return caplog


def links(caplog: pytest.LogCaptureFixture, page: str) -> list[str]:
    """The tokens of the links the "mailer" logged for ``page``."""
    found = []
    for record in caplog.records:
        if record.name == "app_db.example.mail":
            assert record.levelno == logging.INFO
            found += re.findall(rf"{BASE}/{page}\?token=([\w-]+)", record.getMessage())
    return found


async def test_forgot_then_reset_over_http(
    client: httpx.AsyncClient, mails: pytest.LogCaptureFixture
) -> None:
    await sign_up_and_log_in(client)

    unknown = await client.post("/password/forgot", json={"email": "nobody@example.com"})
    assert unknown.status_code == 202
    assert links(mails, "reset-password") == []
    known = await client.post("/password/forgot", json={"email": "ADA@example.com"})
    assert known.status_code == 202
    (token,) = links(mails, "reset-password")

    bad = await client.post("/password/reset", json={"token": "x" * 43, "new_password": NEW})
    reset = await client.post("/password/reset", json={"token": token, "new_password": NEW})
    again = await client.post("/password/reset", json={"token": token, "new_password": NEW})

    assert bad.status_code == 400
    assert bad.json()["errors"] == []
    assert reset.status_code == 204
    assert again.status_code == 400
    assert (await client.get("/me")).status_code == 401  # the old session ended with it
    old = await client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    new = await client.post("/login", json={"email": "ada@example.com", "password": NEW})
    assert (old.status_code, new.status_code) == (401, 200)


async def test_verification_over_http(
    client: httpx.AsyncClient, mails: pytest.LogCaptureFixture
) -> None:
    await sign_up_and_log_in(client)
    assert (await client.get("/me")).json()["verified_at"] is None

    requested = await client.post("/email/verification")
    (token,) = links(mails, "verify-email")
    verified = await client.post("/email/verify", json={"token": token})

    assert requested.status_code == 202
    assert verified.status_code == 200
    assert verified.json()["verified_at"] is not None
    assert (await client.get("/me")).json()["verified_at"] == verified.json()["verified_at"]
    assert (await client.post("/email/verify", json={"token": token})).status_code == 400
