"""``app_db.fastapi``, the public web layer, through the example app that is built on it."""

import ast
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

import app_db.fastapi
from app_db import coalesce
from app_db.example import ExampleSettings, create_app
from app_db.fastapi.database import get_db
from tests import tutorial
from tests.test_example_app import PASSWORD

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://shop.example.com"
PUBLIC = {"app_db", "app_db.fastapi", "app_db.models", "app_db.observe.scrub"}


def test_the_layer_gives_what_an_app_needs() -> None:
    names = {"lifespan", "Db", "OwnedDb", "CurrentUser", "add_error_handlers", "login", "logout"}
    assert names <= set(app_db.fastapi.__all__)


def imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app_db" or name.startswith("app_db.")}


def test_the_example_and_the_tutorial_use_public_names_only() -> None:
    for path in sorted((ROOT / "app_db" / "example").glob("*.py")):
        used = imported_modules(path.read_text())
        assert used - PUBLIC - {m for m in used if m.startswith("app_db.example")} == set(), path
    for name, text in tutorial.files().items():
        if name.endswith(".py"):
            assert imported_modules(text) <= PUBLIC, name


@pytest.fixture
def app(db_sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    return create_app(db_sessionmaker, ExampleSettings(_env_file=None))


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as browser:
        yield browser


async def me_with(app: FastAPI, token: str) -> int:
    """Ask ``/me`` with a bearer token only, as a client that holds no cookie."""
    async with client_for(app) as other:
        response = await other.get("/me", headers={"Authorization": f"Bearer {token}"})
        return response.status_code


async def signed_up(client: httpx.AsyncClient, email: str = "ada@example.com") -> None:
    response = await client.post("/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text


async def test_a_bearer_token_logs_in_without_a_cookie(client: httpx.AsyncClient) -> None:
    await signed_up(client)

    issued = await client.post("/token", json={"email": "ada@example.com", "password": PASSWORD})

    assert issued.status_code == 200
    assert "set-cookie" not in issued.headers
    auth = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert (await client.get("/me", headers=auth)).json()["email"] == "ada@example.com"
    assert (await client.get("/me", headers={"Authorization": "Bearer nope"})).status_code == 401
    unauthorized = await client.get("/me")
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert unauthorized.json() == {"detail": "not logged in", "errors": []}


async def test_the_logged_in_user_is_one_lookup_and_builds_no_session(engine: AsyncEngine) -> None:
    """On an app's engine, ``CurrentUser`` borrows a connection for its one coalesced lookup."""
    built: list[AsyncSession] = []

    class Counted(AsyncSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    maker: async_sessionmaker[AsyncSession]
    maker = async_sessionmaker(engine, class_=Counted, expire_on_commit=False)
    async with client_for(create_app(maker, ExampleSettings(_env_file=None))) as browser:
        await signed_up(browser)
        login = {"email": "ada@example.com", "password": PASSWORD}
        token = (await browser.post("/token", json=login)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert (await browser.get("/me", headers=auth)).status_code == 200
        built.clear()
        looked_up = sum(map(sum, coalesce.batch_sizes(engine).values()))

        for _ in range(5):
            assert (await browser.get("/me", headers=auth)).json()["email"] == "ada@example.com"

        assert built == []
        assert sum(map(sum, coalesce.batch_sizes(engine).values())) == looked_up + 5
        assert (await browser.post("/logout", headers=auth)).status_code == 204
        assert (await browser.get("/me", headers=auth)).status_code == 401  # revoked: at once


async def test_an_override_of_the_sessionmaker_serves_the_login_as_it_serves_db(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app = create_app(None, ExampleSettings(_env_file=None))  # no lifespan runs: no engine

    async def given() -> async_sessionmaker[AsyncSession]:
        return db_sessionmaker

    app.dependency_overrides[app_db.fastapi.get_sessionmaker] = given
    async with client_for(app) as browser:
        await signed_up(browser)  # Db
        login = {"email": "ada@example.com", "password": PASSWORD}
        token = (await browser.post("/token", json=login)).json()["access_token"]
        me = await browser.get("/me", headers={"Authorization": f"Bearer {token}"})  # CurrentUser
        assert me.status_code == 200
        assert me.json()["email"] == "ada@example.com"


async def test_an_override_of_the_request_or_of_nothing_serves_the_login(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    seen: list[str] = []

    async def per_request(request: Request) -> async_sessionmaker[AsyncSession]:
        seen.append(request.url.path)
        return db_sessionmaker

    app = create_app(None, ExampleSettings(_env_file=None))
    app.dependency_overrides[app_db.fastapi.get_sessionmaker] = per_request
    async with client_for(app) as browser:
        await signed_up(browser)
        login = {"email": "ada@example.com", "password": PASSWORD}
        token = (await browser.post("/token", json=login)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        seen.clear()
        me = await browser.get("/me", headers=bearer)
        page = await browser.get("/customers", headers=bearer)  # Db and CurrentUser: one call
        app.dependency_overrides[app_db.fastapi.get_sessionmaker] = lambda: db_sessionmaker
        again = await browser.get("/me", headers=bearer)

    assert (me.status_code, me.json()["email"]) == (200, "ada@example.com")
    assert (page.status_code, page.json()["items"]) == (200, [])
    assert seen == ["/me", "/customers"]
    assert (again.status_code, again.json()["email"]) == (200, "ada@example.com")


async def _yields() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    none: tuple[async_sessionmaker[AsyncSession], ...] = ()
    for never in none:  # a generator, which FastAPI would enter and leave
        yield never


def _tenant() -> str:
    return "a"


def _needs_a_dependency(
    tenant: Annotated[str, Depends(_tenant)],  # noqa: ARG001 - what FastAPI would solve
) -> async_sessionmaker[AsyncSession]:
    raise AssertionError("never called")


def _needs_a_query_parameter(tenant: str = "a") -> async_sessionmaker[AsyncSession]:  # noqa: ARG001
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("override", "why"),
    [
        (_yields, "it gave async_generator, not async_sessionmaker"),
        (lambda: "postgresql://elsewhere", "it gave str, not async_sessionmaker"),
        (_needs_a_dependency, "its parameter 'tenant' needs solving"),
        (_needs_a_query_parameter, "its parameter 'tenant' needs solving"),
    ],
)
@pytest.mark.parametrize("path", ["/me", "/customers", "/healthz"])
async def test_an_override_app_db_cannot_call_fails_loudly(
    override: Callable[..., Any], why: str, path: str
) -> None:
    app = create_app(None, ExampleSettings(_env_file=None))
    app.dependency_overrides[app_db.fastapi.get_sessionmaker] = override
    async with client_for(app) as browser:
        with pytest.raises(TypeError, match=re.escape(why)) as raised:
            await browser.get(path, headers={"Authorization": "Bearer some-token"})
    assert "app_db.fastapi.use(app, sessionmaker)" in str(raised.value)


def test_the_request_session_and_the_logged_in_user_cost_fastapi_three_dependencies() -> None:
    # FastAPI spends about 10 µs on each: Db's, the login's (the cookie's scheme) and the
    # bearer scheme's; the sessionmaker is read by a call, once per request.
    app = FastAPI()

    @app.get("/me")
    async def me(db: app_db.fastapi.Db, user: app_db.fastapi.CurrentUser) -> str:
        return f"{db.bind} {user.email}"

    (route,) = [r for r in app.routes if isinstance(r, APIRoute)]
    db, login = route.dependant.dependencies
    (bearer,) = login.dependencies
    assert (db.call, db.dependencies) == (get_db, [])
    assert (isinstance(login.call, APIKeyCookie), isinstance(bearer.call, HTTPBearer)) == (
        True,
        True,
    )
    assert bearer.dependencies == []


async def test_a_password_change_signs_the_other_devices_out(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await signed_up(client)
    other = await client.post("/token", json={"email": "ada@example.com", "password": PASSWORD})
    await client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    change = {"current_password": PASSWORD, "new_password": "a whole new passphrase"}

    wrong = await client.post("/password", json={**change, "current_password": "not it, no"})
    changed = await client.post("/password", json=change)

    assert (wrong.status_code, changed.status_code) == (422, 204)
    assert wrong.json()["errors"][0]["field"] == "current_password"
    assert (await client.get("/me")).status_code == 200  # this device stays
    assert await me_with(app, other.json()["access_token"]) == 401


async def test_a_device_is_listed_and_signed_out(app: FastAPI, client: httpx.AsyncClient) -> None:
    await signed_up(client)
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    phone = await client.post("/token", json=credentials, headers={"User-Agent": "phone"})
    await client.post("/login", json=credentials, headers={"User-Agent": "laptop"})
    assert await me_with(app, phone.json()["access_token"]) == 200

    listed = (await client.get("/sessions")).json()
    (phone_id,) = [s["id"] for s in listed if s["user_agent"] == "phone"]
    ended = await client.delete(f"/sessions/{phone_id}")
    again = await client.delete(f"/sessions/{phone_id}")

    assert sorted(s["user_agent"] for s in listed) == ["laptop", "phone"]
    assert (ended.status_code, again.status_code) == (204, 404)
    assert await me_with(app, phone.json()["access_token"]) == 401
    assert (await client.get("/me")).status_code == 200


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


async def test_the_openapi_document_declares_the_transports_and_the_error_body(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["session cookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-session",
        "description": "the cookie that `POST /login` sets",
    }
    assert schemes["bearer token"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, method, operation in operations(document):
        answers = operation["responses"]
        assert answers["503"]["content"]["application/json"]["schema"] == error, (path, method)
        if "422" in answers:
            assert answers["422"]["content"]["application/json"]["schema"] == error
        if operation.get("security"):
            assert "401" in answers, (path, method)
    me = document["paths"]["/me"]["get"]
    assert {"session cookie": []} in me["security"]
    assert {"bearer token": []} in me["security"]
    assert "404" in document["paths"]["/customers/{customer_id}"]["get"]["responses"]
    assert "429" in document["paths"]["/login"]["post"]["responses"]
