"""The example app's OpenAPI document and response bodies, as the clients of an app see them,
compared with what they were before the read path was made faster (issue 25).

The snapshots in ``tests/snapshots/`` were written by this module on the main branch of
2026-12-03 (``APP_DB_WRITE_SNAPSHOTS=1 uv run pytest tests/test_example_unchanged.py``).
In the bodies, each id, token, cursor and time is replaced by a placeholder of its shape:
a change of any shape (a time's zone, a field's name, order or presence) still fails.
"""

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import create_app
from tests.web import asgi_client

SNAPSHOTS = Path(__file__).parent / "snapshots"
WRITE = os.environ.get("APP_DB_WRITE_SNAPSHOTS") == "1"
PASSWORD = "correct horse battery"

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(?=Z|[+-]\d\d:\d\d)")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def shape(value: Any) -> Any:
    """Return the body with each id, time and token replaced by a placeholder."""
    if isinstance(value, dict):
        return {
            key: "<cursor>" if key == "next_cursor" and item else shape(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, str):
        if TOKEN.match(value):
            return "<token>"
        return TIME.sub("<time>", UUID.sub("<uuid>", value))
    return value


def compare(name: str, found: Any) -> None:
    path = SNAPSHOTS / name
    text = json.dumps(found, indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    if WRITE:
        path.write_text(text)
    assert found == json.loads(path.read_text()), f"{name} changed"
    assert text == path.read_text(), f"{name} has its keys in another order"


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(db_sessionmaker)
    async with asgi_client(app, headers={"user-agent": "snapshot/1"}) as client:
        yield client


def test_the_openapi_document_is_unchanged(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    compare("example-openapi.json", create_app(db_sessionmaker).openapi())


async def test_the_response_bodies_are_unchanged(client: httpx.AsyncClient) -> None:
    seen: list[dict[str, Any]] = []

    async def call(method: str, url: str, **kwargs: Any) -> Any:
        response = await client.request(method, url, **kwargs)
        body = response.json() if response.content else None
        seen.append({"request": f"{method} {url}", "status": response.status_code, "body": body})
        return body

    await call("GET", "/me")
    await call("POST", "/signup", json={"email": "nope", "password": PASSWORD})
    email = "Ada.Lovelace@Example.com"
    await call("POST", "/signup", json={"email": email, "password": PASSWORD})
    await call("POST", "/signup", json={"email": email.upper(), "password": PASSWORD})
    await call("POST", "/login", json={"email": email, "password": "x" * 12})
    await call("POST", "/login", json={"email": email, "password": PASSWORD, "display_name": 1})
    await call("POST", "/token", json={"email": email, "password": PASSWORD})
    await call("POST", "/login", json={"email": email, "password": PASSWORD})
    await call("GET", "/me")
    await call("GET", "/sessions")
    first = await call(
        "POST", "/customers", json={"name": "Grace", "email": "g@example.org", "phone": "+1 555"}
    )
    await call("POST", "/customers", json={"name": "Ünïcode Ltd"})
    await call("POST", "/customers", json={"name": " "})
    await call("GET", "/customers")
    await call("GET", "/customers?limit=1")
    await call("GET", "/customers?search=grace")
    await call("GET", f"/customers/{first['id']}")
    await call("PATCH", f"/customers/{first['id']}", json={"phone": None, "name": "Grace H."})
    await call("GET", "/customers/00000000-0000-7000-8000-000000000000")
    await call("POST", "/password", json={"current_password": "wrong" * 3, "new_password": "x"})
    await call("POST", "/email/verify", json={"token": "A" * 43})

    compare("example-bodies.json", shape(seen))
