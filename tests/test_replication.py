"""Reads on a real primary and hot standby that replays each commit 300 ms late.

At the defaults, security reads and reads after a write see the primary; a transaction given
the position of an earlier write reads the standby only once it has replayed it; the lag is
measured from WAL positions and reported.
"""

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI, Request, Response
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

import app_db.fastapi as fastapi_layer
from app_db import (
    CustomerCreate,
    CustomerUpdate,
    Page,
    UserCreate,
    commit_position,
    create_engine,
    create_sessionmaker,
    customers,
    driver_transaction,
    fastpath,
    health,
    pool_stats,
    sessions,
    transaction,
    users,
)
from app_db.engine import dispose
from app_db.example import ExampleSettings, create_app
from app_db.security.tokens import hash_token
from app_db.testing.replication import ReplicatedPair
from tests.factories import PASSWORD, make_user
from tests.replicas import both, caught_up, on_node, replica_state
from tests.telemetry import Telemetry
from tests.test_observability import metric_points

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]
STILL_LIVE_ON_STANDBY = "SELECT revoked_at IS NULL FROM sessions WHERE token_hash = $1"


@pytest_asyncio.fixture(loop_scope="session")
async def routed(replicated: ReplicatedPair) -> AsyncIterator[AsyncEngine]:
    """An engine at the defaults on the pair, the standby as its read replica, lag measured."""
    built = create_engine(both(replicated))
    await caught_up(replicated)
    await replica_state(built).measure(built)
    try:
        yield built
    finally:
        await dispose(built)


def names(page: Page[customers.CustomerRow]) -> list[str]:
    return [customer.name for customer in page.items]


async def test_validate_refuses_a_revoked_or_deactivated_session_at_once(
    replicated: ReplicatedPair, routed: AsyncEngine
) -> None:
    maker = create_sessionmaker(routed)
    async with transaction(maker) as db:
        owners = [await make_user(db) for _ in range(64)]
        tokens = [(await sessions.issue(db, owner.id))[0] for owner in owners]
    await caught_up(replicated)  # issued long enough ago: the standby has every session
    replica = replica_state(routed)
    await replica.measure(routed)
    assert replica.route() == "replica"

    async def revoke_then_validate(token: str) -> bool:
        async with transaction(maker) as db:
            assert await sessions.revoke(db, token)
        async with transaction(maker) as db:
            return await sessions.validate(db, token) is not None

    async def deactivate_then_validate(n: int) -> bool:
        async with transaction(maker) as db:
            await users.deactivate(db, owners[n].id)
        async with transaction(maker) as db:
            return await sessions.validate(db, tokens[n]) is not None

    stale_on_standby = 0
    accepted = []
    for n in range(4):  # concurrency 1
        accepted.append(await revoke_then_validate(tokens[n]))
        live = await on_node(replicated.standby.dsn, STILL_LIVE_ON_STANDBY, hash_token(tokens[n]))
        stale_on_standby += live
        accepted.append(await deactivate_then_validate(n + 4))
    accepted += await asyncio.gather(*(revoke_then_validate(t) for t in tokens[8:40]))
    accepted += await asyncio.gather(*(deactivate_then_validate(n) for n in range(40, 64)))

    assert stale_on_standby == 4  # the standby still had those sessions live
    assert accepted.count(True) == 0
    assert len(accepted) == 64


async def test_a_new_user_logs_in_at_once_though_the_standby_has_not_seen_it(
    routed: AsyncEngine,
) -> None:
    maker = create_sessionmaker(routed)

    async def sign_up_then_log_in(email: str) -> tuple[bool, bool]:
        async with transaction(maker) as db:
            await users.create(db, UserCreate(email=email, password=SecretStr(PASSWORD)))
        async with transaction(maker) as db:
            on_replica = await users.get_by_email(db, email)
            logged_in = await users.authenticate(db, email, PASSWORD)
        return on_replica is not None, logged_in is not None

    first = await sign_up_then_log_in("first.login@example.com")
    together = await asyncio.gather(
        *(sign_up_then_log_in(f"login{n}@example.com") for n in range(8))
    )

    assert first == (False, True)  # the replica did not have the user yet; the login worked
    assert [logged_in for _, logged_in in together] == [True] * 8


async def test_a_client_reads_its_own_writes_with_the_commit_position(
    replicated: ReplicatedPair, routed: AsyncEngine
) -> None:
    maker = create_sessionmaker(routed)
    replica = replica_state(routed)
    async with transaction(maker) as db:
        created = await customers.create(db, CustomerCreate(name="Causal first"))
    position = await commit_position(db)
    assert position is not None

    async with transaction(maker) as db:
        anyone = names(await customers.list(db, search="Causal first"))
    async with transaction(maker, after=position) as db:
        the_writer = names(await customers.list(db, search="Causal first"))
    async with transaction(maker, primary=True) as db:
        pinned = names(await customers.list(db, search="Causal first"))
    assert anyone == []  # the standby, 300 ms behind
    assert the_writer == pinned == ["Causal first"]

    async with transaction(maker, after=position) as db:
        await customers.update(db, created.id, CustomerUpdate(name="Causal renamed"))
    renamed_at = await commit_position(db)
    assert renamed_at is not None
    assert renamed_at != position
    async with transaction(maker, after=renamed_at) as db:
        assert names(await customers.list(db, search="Causal")) == ["Causal renamed"]

    await caught_up(replicated)
    await replica.measure(routed)
    served = replica.reads
    async with transaction(maker, after=renamed_at) as db:  # replayed now: the standby serves
        assert names(await customers.list(db, search="Causal")) == ["Causal renamed"]
        assert await commit_position(db) is None  # inside the block: nothing committed yet
    assert replica.reads == served + 1
    async with transaction(maker, primary=True) as db:
        assert names(await customers.list(db, search="Causal")) == ["Causal renamed"]
    async with transaction(maker, after="not a position") as db:  # forged: the primary
        assert names(await customers.list(db, search="Causal")) == ["Causal renamed"]
    assert replica.reads == served + 1
    assert await commit_position(db) is None  # a transaction that wrote nothing


async def test_reads_go_to_the_primary_while_the_lag_exceeds_the_bound(
    replicated: ReplicatedPair, telemetry: Telemetry
) -> None:
    bounded = create_engine(both(replicated, database_read_max_lag=timedelta(milliseconds=100)))
    replica = replica_state(bounded)
    maker = create_sessionmaker(bounded)
    pool = f"127.0.0.1:{replicated.primary.port}/postgres"
    writer = await asyncpg.connect(replicated.primary.dsn)
    writing = asyncio.create_task(keep_writing(writer))
    try:
        for _ in range(8):  # under a steady write load the standby stays 300 ms behind
            await replica.measure(bounded)
            await asyncio.sleep(0.1)
        lagging = pool_stats(bounded)
        report = await health.check(bounded)
        lag_points = metric_points(telemetry, "app_db.replica.lag", pool)
        route_points = metric_points(telemetry, "app_db.replica.route", pool)
        async with transaction(maker) as db:
            await users.get_by_email(db, "nobody@example.com")
    finally:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        await writer.close()
    assert lagging.replica_route == "lagging"
    assert lagging.replica_lag_s is not None
    assert lagging.replica_lag_s >= 0.25
    assert report.replica is not None
    assert (report.replica.route, report.replica.reads_on_primary) == ("lagging", True)
    assert [point.value >= 0.25 for point in lag_points] == [True]
    routes = {dict(point.attributes)["app_db.replica.route"]: point.value for point in route_points}
    assert routes == {"replica": 0, "lagging": 1, "down": 0}
    assert replica.reads == 0

    await caught_up(replicated)
    await replica.measure(bounded)
    caught = pool_stats(bounded)
    async with transaction(maker) as db:
        await users.get_by_email(db, "nobody@example.com")
    await dispose(bounded)
    assert caught.replica_route == "replica"
    assert caught.replica_lag_s is not None
    assert caught.replica_lag_s < 0.25  # two round trips now, not the standby's 300 ms
    assert replica.reads == 1


async def keep_writing(connection: asyncpg.Connection) -> None:
    while True:
        await connection.execute("INSERT INTO customers (name) VALUES ('kept busy')")
        await asyncio.sleep(0.02)


async def test_tcp_connections_keep_alive(routed: AsyncEngine) -> None:
    async with routed.connect() as connection:
        raw = await connection.get_raw_connection()
        sock = raw.driver_connection._transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000


POSITION = "db_position"


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """The read-replicas guide's dependency: a transaction after the client's position."""
    after = request.cookies.get(POSITION)
    async with transaction(request.app.state.sessionmaker, after=after) as db:
        yield db
    request.state.db_position = await commit_position(db)


Db = Annotated[AsyncSession, Depends(get_db, scope="function")]


def web_app(maker: async_sessionmaker[AsyncSession]) -> FastAPI:
    """The guide's recipe: the position goes back to the client in a cookie."""
    app = FastAPI()
    app.state.sessionmaker = maker

    @app.middleware("http")
    async def carry_position(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        position = getattr(request.state, "db_position", None)
        if position is not None:
            response.set_cookie(POSITION, position, max_age=300, httponly=True, samesite="lax")
        return response

    @app.post("/customers", status_code=201)
    async def create(name: str, db: Db) -> None:
        await customers.create(db, CustomerCreate(name=name))

    @app.get("/customers")
    async def listing(search: str, db: Db) -> list[str]:
        return names(await customers.list(db, search=search))

    return app


async def test_a_web_layer_carries_the_position_in_a_cookie(routed: AsyncEngine) -> None:
    transport = httpx.ASGITransport(app=web_app(create_sessionmaker(routed)))
    missed = {"carried": 0, "dropped": 0}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for n in range(10):
            for how in missed:
                name = f"Over HTTP {how} {n}"
                created = await client.post("/customers", params={"name": name})
                assert created.status_code == 201
                assert re.fullmatch(r"[0-9a-f]{1,16}", created.cookies[POSITION])
                if how == "dropped":
                    client.cookies.clear()
                listed = await client.get("/customers", params={"search": name})
                assert POSITION not in listed.cookies  # a read sends no position back
                missed[how] += listed.json() != [name]
    assert missed["carried"] == 0
    assert missed["dropped"] > 0  # the standby is behind: without the position, reads miss


def layer_app(maker: async_sessionmaker[AsyncSession]) -> FastAPI:
    """An app on ``app_db.fastapi`` alone: ``Db`` and ``harden`` carry the position."""
    app = FastAPI()
    fastapi_layer.use(app, maker)
    fastapi_layer.harden(app)

    @app.post("/customers", status_code=201)
    async def create(name: str, db: fastapi_layer.Db) -> None:
        await customers.create(db, CustomerCreate(name=name))

    @app.get("/customers")
    async def listing(search: str, db: fastapi_layer.Db) -> list[str]:
        return names(await customers.list(db, search=search))

    return app


async def test_the_web_layer_carries_the_position_by_itself(routed: AsyncEngine) -> None:
    transport = httpx.ASGITransport(app=layer_app(create_sessionmaker(routed)))
    stale = 0
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        for n in range(10):
            name = f"Layer {n}"
            created = await client.post("/customers", params={"name": name})
            assert created.status_code == 201
            assert re.fullmatch(r"[0-9a-f]{1,16}", created.headers["app-db-position"])
            assert fastapi_layer.database.POSITION_COOKIE in created.cookies
            stale += (await client.get("/customers", params={"search": name})).json() != [name]
    assert stale == 0


async def test_the_example_app_is_consistent_on_a_lagging_standby(routed: AsyncEngine) -> None:
    app = create_app(create_sessionmaker(routed), ExampleSettings(_env_file=None))
    stale = 0
    transport = httpx.ASGITransport(app=app)
    for n in range(5):
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            email = f"lagging{n}@example.com"
            account = {"email": email, "password": PASSWORD}
            stale += (await c.post("/signup", json=account)).status_code != 201
            stale += (await c.post("/login", json=account)).status_code != 200  # sign-up→login
            stale += (await c.get("/me")).status_code != 200  # login → /me
            await c.post("/customers", json={"name": f"Lagging {n}"})
            listed = (await c.get("/customers")).json()["items"]  # create → list
            stale += [item["name"] for item in listed] != [f"Lagging {n}"]
            await c.post("/logout")
            stale += (await c.get("/me")).status_code != 401  # logout → /me
    assert stale == 0


async def test_a_write_held_on_the_driver_is_read_back_in_its_block_and_after_it(
    replicated: ReplicatedPair, routed: AsyncEngine
) -> None:
    """A write in a transaction held on the driver (``app_db.driver_transaction``): the block's
    later reads see it on its own connection, never on the standby, and its commit position
    carries it to the next transaction."""
    maker = create_sessionmaker(routed)
    replica = replica_state(routed)
    async with transaction(maker) as db:
        user = await make_user(db)
    await caught_up(replicated)
    await replica.measure(routed)
    assert replica.route() == "replica"
    count = "SELECT count(*) AS n FROM sessions WHERE user_id = $1"
    served = replica.reads

    async with transaction(maker) as db:
        before = await fastpath.fetch(db, count, user.id, read_only=True)  # the standby
        await sessions.issue(db, user.id)
        assert driver_transaction.held(db) is not None
        within = await fastpath.fetch(db, count, user.id, read_only=True)
    position = await commit_position(db)
    assert (before[0]["n"], within[0]["n"]) == (0, 1)
    assert replica.reads == served + 1  # only the read before the write
    assert position is not None

    async with transaction(maker) as db:
        anyone = await fastpath.fetch(db, count, user.id, read_only=True)
    async with transaction(maker, after=position) as db:
        the_writer = await fastpath.fetch(db, count, user.id, read_only=True)
    assert anyone[0]["n"] == 0  # the standby, 300 ms behind
    assert the_writer[0]["n"] == 1
