"""The example app's web hardening: throttled logins, a ``__Host-`` cookie, no caching of
answers, security headers, and unsafe requests from other sites refused."""

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example import COOKIE, ExampleSettings, create_app
from tests.test_example_app import PASSWORD, sign_up_and_log_in

BASE = "https://shop.example.com"
ATTACKER = ("203.0.113.7", 40000)
OWNER = ("198.51.100.4", 40000)


def client_for(
    maker: async_sessionmaker[AsyncSession],
    peer: tuple[str, int] = OWNER,
    settings: ExampleSettings | None = None,
) -> httpx.AsyncClient:
    app = create_app(maker, settings or ExampleSettings(_env_file=None))
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url=BASE)


@pytest_asyncio.fixture(loop_scope="session")
async def owner(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(db_sessionmaker) as client:
        await sign_up_and_log_in(client)
        yield client


async def test_thirty_wrong_logins_end_in_429_and_the_owner_still_gets_in(
    owner: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    wrong = {"email": "ada@example.com", "password": "not the password"}
    async with client_for(db_sessionmaker, ATTACKER) as attacker:
        answers = [await attacker.post("/login", json=wrong) for _ in range(30)]

    assert [a.status_code for a in answers[:6]] == [401] * 6
    assert {a.status_code for a in answers[6:]} == {429}
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers[6:])
    right = {"email": "ada@example.com", "password": PASSWORD}
    assert (await owner.post("/login", json=right)).status_code == 200


async def test_the_cookie_is_host_only_secure_and_http_only(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with client_for(db_sessionmaker) as client:
        await client.post("/signup", json={"email": "ada@example.com", "password": PASSWORD})
        response = await client.post(
            "/login", json={"email": "ada@example.com", "password": PASSWORD}
        )

    assert COOKIE.startswith("__Host-")
    (morsel,) = SimpleCookie(response.headers["set-cookie"]).values()
    assert morsel.key == COOKIE
    assert (morsel["secure"], morsel["httponly"], morsel["path"]) == (True, True, "/")
    assert morsel["domain"] == ""
    assert morsel["samesite"].lower() == "lax"


async def test_answers_are_not_stored_and_carry_security_headers(
    owner: httpx.AsyncClient,
) -> None:
    for response in (await owner.get("/me"), await owner.get("/customers")):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "https://other.shop.example.com"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://other.shop.example.com"},
    {"Sec-Fetch-Site": "cross-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_an_unsafe_request_from_another_site_is_refused(
    owner: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await owner.post("/customers", json={"name": "Acme"}, headers=headers)
    upload = {"file": ("c.csv", b"name\nAcme\n", "text/csv")}
    imported = await owner.post("/customers/import", files=upload, headers=headers)
    logged_out = await owner.post("/logout", headers=headers)

    assert [created.status_code, imported.status_code, logged_out.status_code] == [403] * 3
    assert created.headers["x-content-type-options"] == "nosniff"
    assert (await owner.get("/customers")).json()["items"] == []
    assert (await owner.get("/me")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},  # not a browser: curl, another server
        {"Origin": BASE},
        {"Sec-Fetch-Site": "same-origin", "Origin": BASE},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
async def test_the_sites_own_requests_pass(
    owner: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await owner.post("/customers", json={"name": "Acme"}, headers=headers)

    assert created.status_code == 201


async def test_trusted_origins_pass(db_sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    trusting = ExampleSettings(_env_file=None, trusted_origins=("https://admin.example.com",))
    async with client_for(db_sessionmaker, settings=trusting) as client:
        await sign_up_and_log_in(client)
        trusted = await client.post(
            "/customers",
            json={"name": "Acme"},
            headers={"Origin": "https://admin.example.com", "Sec-Fetch-Site": "same-site"},
        )
        other = await client.post(
            "/customers", json={"name": "Acme"}, headers={"Origin": "https://evil.example"}
        )

    assert (trusted.status_code, other.status_code) == (201, 403)
