"""Over HTTP, each user reaches their own customers only: another's is not found (404)."""

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import ExampleSettings, create_app
from tests.test_example_app import sign_up_and_log_in
from tests.web import asgi_client

BASE = "https://shop.example.com"


async def client_of(
    maker: async_sessionmaker[AsyncSession], email: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(maker, ExampleSettings(_env_file=None))
    async with asgi_client(app, BASE) as c:
        await sign_up_and_log_in(c, email)
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def alice(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_of(db_sessionmaker, "alice@example.com"):
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def bob(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_of(db_sessionmaker, "bob@example.com"):
        yield client


async def test_another_users_customer_is_not_found_for_any_verb(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    created = await alice.post("/customers", json={"name": "Acme", "phone": "+1 555 0100"})
    assert created.status_code == 201, created.text
    acme = created.json()
    alice_id = (await alice.get("/me")).json()["id"]
    assert acme["owner_id"] == alice_id

    listed = await bob.get("/customers")
    searched = await bob.get("/customers", params={"search": "acme"})
    read = await bob.get(f"/customers/{acme['id']}")
    renamed = await bob.patch(f"/customers/{acme['id']}", json={"name": "Mine"})
    deleted = await bob.delete(f"/customers/{acme['id']}")
    forged = await bob.post("/customers", json={"name": "Forged", "owner_id": alice_id})
    imported = await bob.post(
        "/customers/import",
        files={"file": ("c.csv", f"name,owner_id\nForged,{alice_id}\n".encode(), "text/csv")},
    )

    assert listed.json()["items"] == []
    assert searched.json()["items"] == []
    assert [read.status_code, renamed.status_code, deleted.status_code] == [404, 404, 404]
    assert forged.status_code == 422  # the owner is never the client's to name
    assert forged.json()["errors"][0]["field"] == "body.owner_id"
    assert imported.status_code == 422
    assert (await alice.get(f"/customers/{acme['id']}")).json() == acme
    assert [c["name"] for c in (await alice.get("/customers")).json()["items"]] == ["Acme"]


async def test_a_new_customer_belongs_to_whoever_created_it(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await alice.post("/customers", json={"name": "Alice's"})
    await bob.post("/customers", json={"name": "Bob's"})
    upload = {"file": ("c.csv", b"name\nBob bulk\n", "text/csv")}
    assert (await bob.post("/customers/import", files=upload)).status_code == 200

    assert [c["name"] for c in (await alice.get("/customers")).json()["items"]] == ["Alice's"]
    assert [c["name"] for c in (await bob.get("/customers")).json()["items"]] == [
        "Bob's",
        "Bob bulk",
    ]
