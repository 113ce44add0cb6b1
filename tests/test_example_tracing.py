"""The example app traced: one tree per request, FastAPI's span over app_db's over asyncpg's."""

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import create_app
from app_db.example.tracing import instrument, tree
from tests.factories import PASSWORD
from tests.telemetry import Telemetry
from tests.web import asgi_client


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(db_sessionmaker)
    instrument(app)  # the suite's SDK provider is the global one
    async with asgi_client(app) as client:
        yield client


async def test_a_request_is_one_tree_and_its_query_values_are_masked(
    client: httpx.AsyncClient, telemetry: Telemetry
) -> None:
    login = {"email": "tree@example.com", "password": PASSWORD}
    assert (await client.post("/signup", json=login)).status_code == 201
    assert (await client.post("/login", json=login)).status_code == 200
    telemetry.finished()

    listed = await client.get("/customers", params={"search": "tree@example.com"})

    assert listed.status_code == 200
    spans = telemetry.finished()
    request = [span for span in spans if span.parent is None]
    assert [span.name for span in request] == ["GET /customers"]
    lines = tree(spans).splitlines()
    assert lines[1].strip().startswith("GET /customers")
    nested = [line for line in lines if "app_db." in line or line.strip().startswith("WITH")]
    depth = {line.strip().split()[0]: len(line) - len(line.lstrip()) for line in nested}
    assert depth["app_db.sessions.validate"] == depth["app_db.customers.list"] == 4
    server = request[0]
    for key in ("http.target", "http.url", "url.full", "url.query"):
        value = str((server.attributes or {}).get(key, ""))
        assert "tree@example.com" not in value
        assert "tree%40example.com" not in value
    assert any("search=?" in str(value) for value in (server.attributes or {}).values())
