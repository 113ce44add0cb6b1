"""Tests written the way FastAPI's documentation teaches: AnyIO's marker and httpx's client.

They run in the same suite as the pytest-asyncio tests, on the plugin's ``db_session``, with
``anyio_backend`` function-scoped as in AnyIO's own examples. In this suite's auto mode
pytest-asyncio runs them; the plugin's fixtures follow the loop of whichever runner does.
"""

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import users
from app_db.example import create_app

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sign_up_and_log_in_over_http(
    db_sessionmaker: async_sessionmaker[AsyncSession], db_session: AsyncSession
) -> None:
    app = create_app(db_sessionmaker)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as client:
        signed_up = await client.post(
            "/signup", json={"email": "Grace@Example.com", "password": PASSWORD}
        )
        assert signed_up.status_code == 201, signed_up.text
        logged_in = await client.post(
            "/login", json={"email": "grace@example.com", "password": PASSWORD}
        )
        assert logged_in.status_code == 200, logged_in.text
        me = await client.get("/me")
        assert me.json()["email"] == "Grace@example.com"

    stored = await users.get_by_email(db_session, "GRACE@example.com")
    assert stored is not None
    assert str(stored.id) == me.json()["id"]


async def test_the_fixtures_share_the_tests_loop_and_start_clean(
    db_connection: AsyncConnection, db_session: AsyncSession
) -> None:
    # On another loop than the test's, the connection's first statement would raise.
    assert await db_connection.scalar(text("SELECT 1")) == 1
    assert await users.get_by_email(db_session, "grace@example.com") is None
