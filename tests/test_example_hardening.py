"""The FastAPI example under bad input and a failing database: 413, 422 and 503, never 500."""

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import create_engine, create_sessionmaker
from app_db.example import COOKIE, MIB, ExampleSettings, create_app
from app_db.security.tokens import new_token
from tests.conftest import settings
from tests.test_example_app import PASSWORD, sign_up_and_log_in
from tests.web import asgi_client

BASE = "https://testserver"
HEADER = "name,email,phone\n"


def limits(**values: Any) -> ExampleSettings:
    """The example's settings with some values changed, ignoring any ``.env`` file."""
    return ExampleSettings(_env_file=None, **values)


def client_for(app: Any, **options: Any) -> httpx.AsyncClient:
    return asgi_client(app, BASE, **options)


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(db_sessionmaker, limits())) as client:
        await sign_up_and_log_in(client)
        yield client


async def upload(client: httpx.AsyncClient, content: bytes) -> httpx.Response:
    return await client.post("/customers/import", files={"file": ("c.csv", content, "text/csv")})


async def listed_names(client: httpx.AsyncClient) -> list[str]:
    response = await client.get("/customers")
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def closed_port() -> int:
    """Return a local port that was just free: nothing listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest_asyncio.fixture(loop_scope="session")
async def dead_engine() -> AsyncIterator[AsyncEngine]:
    """An engine on a closed local port: every connection attempt is refused."""
    url = make_url(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres")
    engine = create_engine(settings(url, database_connect_timeout=5))
    try:
        yield engine
    finally:
        await engine.dispose()


# CSV upload: size


async def test_upload_over_the_limit_is_413_before_any_database_work(
    dead_engine: AsyncEngine,
) -> None:
    app = create_app(create_sessionmaker(dead_engine), limits())
    content = HEADER.encode() + b"x" * (10 * MIB)
    async with client_for(app, cookies={COOKIE: new_token()}) as client:
        response = await upload(client, content)

    assert response.status_code == 413
    assert len(response.content) < 100


async def test_streamed_upload_is_cut_off_just_past_the_limit(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    limit, chunk = 64 * 1024, 4096
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n'
        yield HEADER.encode()
        for _ in range(4 * limit // chunk):
            sent += chunk
            yield b"Acme,,\n" * (chunk // 7) + b"\n" * (chunk % 7)
        yield b"\r\n--b--\r\n"

    app = create_app(db_sessionmaker, limits(max_upload_bytes=limit))
    async with client_for(app) as client:
        await sign_up_and_log_in(client)
        headers = {"content-type": "multipart/form-data; boundary=b"}
        response = await client.post("/customers/import", content=body(), headers=headers)
        assert await listed_names(client) == []

    assert response.status_code == 413
    assert sent <= limit + chunk


async def test_upload_limit_is_a_setting(
    client: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    small = create_app(db_sessionmaker, limits(max_upload_bytes=1000))
    content = (HEADER + "Acme,,\n" * 200).encode()
    async with client_for(small, cookies=client.cookies) as limited:
        refused = await upload(limited, content)
    accepted = await upload(client, content)

    assert refused.status_code == 413
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"imported": 200}


# CSV upload: content


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        pytest.param(b"name\nAcme\nM\xfcller GmbH\n", 3, "not UTF-8", id="latin-1"),
        pytest.param(
            f"{HEADER}Acme,,\n{'x' * 200_000},,\n".encode(), 3, "field limit", id="200k-cell"
        ),
        pytest.param(f'{HEADER}Acme,,\n"Open,,\n'.encode(), 3, "end of data", id="open-quote"),
        pytest.param(f'{HEADER}"Acme"x,,\n'.encode(), 2, "expected after", id="text-after-quote"),
        pytest.param(f"{HEADER}Acme,a@acme.example,1234,x\n".encode(), 2, "4 cells", id="extra"),
        pytest.param(f"{HEADER}Acme,a@acme.example\n".encode(), 2, "2 cells", id="missing"),
        pytest.param(b"name,emial\nAcme,a@acme.example\n", 1, "'emial'", id="unknown-column"),
        pytest.param(b"name,name\nAcme,Acme\n", 1, "twice", id="repeated-column"),
        pytest.param(b"x" * 100_000 + b"\nAcme\n", 1, "unknown column", id="huge-column"),
        pytest.param(random.Random(11).randbytes(64 * 1024), 1, "not UTF-8", id="random-bytes"),
    ],
)
async def test_bad_csv_is_422_naming_the_line(
    client: httpx.AsyncClient, content: bytes, line: int, reason: str
) -> None:
    response = await upload(client, content)

    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"line {line}: ")
    assert reason in response.json()["detail"]
    assert len(response.content) < 500
    assert await listed_names(client) == []


async def test_invalid_row_is_422_naming_its_line_and_row(client: httpx.AsyncClient) -> None:
    content = f'{HEADER}"Two\nlines",,\n\n,missing@name.example,\n'.encode()

    response = await upload(client, content)

    assert response.status_code == 422
    body = response.json()
    [where] = body["errors"]
    assert (where["position"], where["field"]) == (1, "name")
    assert body["detail"].startswith("line 5: field 'name': ")


async def test_utf8_with_a_byte_order_mark_imports(client: httpx.AsyncClient) -> None:
    content = "\ufeffname,email\nMüller GmbH,info@mueller.example\n".encode()

    response = await upload(client, content)

    assert response.status_code == 200, response.text
    assert await listed_names(client) == ["Müller GmbH"]


# CSV upload: time limit


async def test_import_past_its_time_limit_while_checking_rows_is_503(
    client: httpx.AsyncClient, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    hurried = create_app(db_sessionmaker, limits(import_timeout=1e-9))
    async with client_for(hurried, cookies=client.cookies) as limited:
        response = await upload(limited, (HEADER + "Acme,,\n").encode())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "did not finish within" in response.json()["detail"]
    assert await listed_names(client) == []


async def test_blocked_copy_gives_up_at_the_time_limit_and_frees_the_connection(
    client: httpx.AsyncClient,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    app_db_engine: AsyncEngine,
) -> None:
    hurried = create_app(db_sessionmaker, limits(import_timeout=3))
    async with app_db_engine.connect() as locker, client_for(hurried, cookies=client.cookies) as c:
        await locker.execute(text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
        async with asyncio.timeout(60):  # the unfixed app waits for the lock forever
            post = asyncio.create_task(upload(c, (HEADER + "Acme,,\n").encode()))
            while not await import_is_waiting_for_the_lock(locker):
                assert not post.done(), post.result().text
                await asyncio.sleep(0.02)
            response = await post
        await locker.rollback()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "did not finish within 3 s" in response.json()["detail"]
    assert await listed_names(client) == []


async def import_is_waiting_for_the_lock(locker: AsyncConnection) -> bool:
    """Return whether another backend on this database waits for a lock (COPY or its lookup)."""
    waiting = await locker.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
    )
    return bool(waiting)


# JSON bodies


async def test_json_body_over_the_limit_is_413_not_echoed(client: httpx.AsyncClient) -> None:
    email = "x" * MIB + "@example.com"

    response = await client.post("/signup", json={"email": email, "password": PASSWORD})

    assert response.status_code == 413
    assert len(response.content) < 100


async def test_validation_error_names_the_field_without_echoing_the_input(
    client: httpx.AsyncClient,
) -> None:
    email = "x" * (MIB // 2)

    response = await client.post("/signup", json={"email": email, "password": PASSWORD})

    assert response.status_code == 422
    assert len(response.content) < 1000
    [error] = response.json()["errors"]
    assert error["field"] == "body.email"
    assert set(error) == {"field", "message", "position"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/signup", b'{"email": "ad\\ud800a@example.com", "password": "correct horse battery"}'),
        ("/signup", b'{"email": "ada@example.com", "password": "short\\ud800"}'),
        ("/customers", b'{"name": "Acme", "email": "\\udfff@acme.example"}'),
        ("/customers", b'{"name": "Acme", "phone": "+1 \\ud800"}'),
        ("/signup", b'{"email": "ada@example.com", "\\ud800": 1, "password": ["\\ud800"]}'),
    ],
)
async def test_lone_surrogates_are_refused_with_422_never_500(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    headers = {"content-type": "application/json"}

    response = await client.post(path, content=body, headers=headers)

    assert response.status_code == 422, response.text
    response.json()


# A database that is down or overloaded


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/login", {"email": "ada@example.com", "password": PASSWORD}),
        ("POST", "/signup", {"email": "ada@example.com", "password": PASSWORD}),
        ("GET", "/me", None),
    ],
)
async def test_unreachable_database_is_503_with_retry_after(
    dead_engine: AsyncEngine, method: str, path: str, body: dict[str, str] | None
) -> None:
    app = create_app(create_sessionmaker(dead_engine), limits())
    async with client_for(app, cookies={COOKIE: new_token()}) as client:
        response = await client.request(method, path, json=body)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "unreachable" in response.json()["detail"]


async def test_exhausted_pool_is_503_with_retry_after(app_db_database: URL) -> None:
    engine = create_engine(settings(app_db_database), pool_size=1, max_overflow=0, pool_timeout=0.1)
    app = create_app(create_sessionmaker(engine), limits())
    try:
        async with engine.connect(), client_for(app) as client:
            response = await client.post(
                "/login", json={"email": "ada@example.com", "password": PASSWORD}
            )
    finally:
        await engine.dispose()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "pool" in response.json()["detail"]


async def test_statement_timeout_is_503_with_retry_after(
    app_db_database: URL, app_db_engine: AsyncEngine
) -> None:
    engine = create_engine(settings(app_db_database, database_statement_timeout_ms=200))
    app = create_app(create_sessionmaker(engine), limits())
    try:
        async with app_db_engine.connect() as locker, client_for(app) as client:
            await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            response = await client.post(
                "/login", json={"email": "ada@example.com", "password": PASSWORD}
            )
            await locker.rollback()
    finally:
        await engine.dispose()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "statement_timeout" in response.json()["detail"]
