"""The FastAPI example, driven over HTTP with httpx, inside the rolled-back harness."""

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import COOKIE, create_app
from tests.web import asgi_client

PASSWORD = "correct horse battery"


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(db_sessionmaker)) as client:
        yield client


async def sign_up_and_log_in(client: httpx.AsyncClient, email: str = "ada@example.com") -> None:
    response = await client.post("/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    response = await client.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text


async def test_signup_login_me_logout(client: httpx.AsyncClient) -> None:
    assert (await client.get("/me")).status_code == 401

    response = await client.post(
        "/signup", json={"email": "Ada@Example.com", "password": PASSWORD, "display_name": "Ada"}
    )
    assert response.status_code == 201
    assert response.json()["email"] == "Ada@example.com"
    assert "password_hash" not in response.json()

    response = await client.post("/login", json={"email": "ada@EXAMPLE.com", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "secure" in cookie
    assert "samesite=lax" in cookie

    me = await client.get("/me")
    assert me.status_code == 200
    assert me.json()["display_name"] == "Ada"

    assert (await client.post("/logout")).status_code == 204
    assert (await client.get("/me")).status_code == 401


async def test_signup_errors(client: httpx.AsyncClient) -> None:
    await sign_up_and_log_in(client)

    duplicate = await client.post(
        "/signup", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    invalid = await client.post("/signup", json={"email": "nope", "password": PASSWORD})
    wrong = await client.post("/login", json={"email": "ada@example.com", "password": "x" * 12})

    assert duplicate.status_code == 409
    assert invalid.status_code == 422
    assert wrong.status_code == 401


async def test_login_replaces_the_presented_session(
    client: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await sign_up_and_log_in(client)
    first = client.cookies[COOKIE]

    response = await client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert client.cookies[COOKIE] != first

    transport = httpx.ASGITransport(app=create_app(db_sessionmaker))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", cookies={COOKIE: first}
    ) as stale:
        assert (await stale.get("/me")).status_code == 401
    assert (await client.get("/me")).status_code == 200


async def test_logout_everywhere_ends_other_sessions(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app = create_app(db_sessionmaker)
    transport = httpx.ASGITransport(app=app)
    base = "https://testserver"
    async with (
        httpx.AsyncClient(transport=transport, base_url=base) as laptop,
        httpx.AsyncClient(transport=transport, base_url=base) as phone,
    ):
        await sign_up_and_log_in(laptop)
        response = await phone.post(
            "/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert response.status_code == 200

        assert (await laptop.post("/logout-everywhere")).status_code == 204

        assert (await phone.get("/me")).status_code == 401
        assert (await laptop.get("/me")).status_code == 401


async def test_customers_crud_and_pages(client: httpx.AsyncClient) -> None:
    assert (await client.get("/customers")).status_code == 401
    await sign_up_and_log_in(client)

    created = await client.post("/customers", json={"name": "Acme", "email": "Grace@Acme.com"})
    assert created.status_code == 201
    customer_id = created.json()["id"]
    for i in range(4):
        assert (await client.post("/customers", json={"name": f"Other {i}"})).status_code == 201

    patched = await client.patch(f"/customers/{customer_id}", json={"phone": "+1 555 0100"})
    assert patched.json()["phone"] == "+1 555 0100"
    assert (await client.get(f"/customers/{customer_id}")).json()["name"] == "Acme"

    names: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get("/customers", params=params)).json()
        names.extend(item["name"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert names == ["Acme", "Other 0", "Other 1", "Other 2", "Other 3"]

    search = await client.get("/customers", params={"search": "acme"})
    assert [c["name"] for c in search.json()["items"]] == ["Acme"]
    assert (await client.get("/customers", params={"limit": 10_000})).status_code == 422
    assert (await client.get("/customers", params={"cursor": "forged"})).status_code == 422

    assert (await client.delete(f"/customers/{customer_id}")).status_code == 204
    assert (await client.delete(f"/customers/{customer_id}")).status_code == 404
    assert (await client.get(f"/customers/{customer_id}")).status_code == 404
    assert (await client.post("/customers", json={"name": ""})).status_code == 422


async def test_csv_import(client: httpx.AsyncClient) -> None:
    await sign_up_and_log_in(client)
    good = "name,email,phone\nAcme,sales@acme.example,+1 555 0100\nGlobex,,\n"
    bad = "name,email,phone\nFine,,\n,missing@name.example,\n"

    imported = await client.post(
        "/customers/import", files={"file": ("c.csv", good.encode(), "text/csv")}
    )
    refused = await client.post(
        "/customers/import", files={"file": ("c.csv", bad.encode(), "text/csv")}
    )

    assert imported.status_code == 200, imported.text
    assert imported.json() == {"imported": 2}
    assert refused.status_code == 422
    [where] = refused.json()["errors"]
    assert (where["position"], where["field"]) == (1, "name")
    assert refused.json()["detail"].startswith("line 3: ")
    listed = (await client.get("/customers")).json()["items"]
    assert [c["name"] for c in listed] == ["Acme", "Globex"]
