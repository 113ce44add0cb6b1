"""Login throttling: failures counted in PostgreSQL per account and network, and per network.

The counters are committed on their own connection, so these tests see them with the real
clock; time is moved by rewriting a counter's timestamps.
"""

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    InvalidInputError,
    ThrottledError,
    UserCreate,
    create_sessionmaker,
    fastpath,
    transaction,
    users,
)
from app_db.security import passwords, throttle
from app_db.security.events import client
from app_db.settings import ThrottleSettings
from tests.factories import PASSWORD, make_user

ATTACKER = "203.0.113.7"
OWNER = "198.51.100.4"
WRONG = "not the password"
Outcome = str | int  # "failed", "ok", or the retry_after of a refusal


class HandlerRefusedError(Exception):
    """What a web handler raises after a failed login."""


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords that argon2 verified, in order."""
    verified: list[str] = []
    real = passwords._verify

    def counting(password_hash: str, password: str) -> bool:
        verified.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", counting)
    return verified


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that count many attempts are about counting, not hashing."""
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    monkeypatch.setattr(passwords, "_dummy_hash_sync", lambda: passwords.HASHER.hash("x"))


async def log_in(db: AsyncSession, email: str, password: str, **kwargs: Any) -> Outcome:
    try:
        user = await users.authenticate(db, email, password, **kwargs)
    except ThrottledError as refused:
        return refused.retry_after
    return "failed" if user is None else "ok"


async def counter(db: AsyncSession, key: bytes) -> Any:
    connection = await db.connection()
    result = await connection.execute(
        text("SELECT failures, blocked_until - now() AS wait FROM throttles WHERE key = :key"),
        {"key": key},
    )
    return result.one_or_none()


async def with_user(engine: AsyncEngine, email: str) -> async_sessionmaker[AsyncSession]:
    """Commit a user whose password is ``PASSWORD``; return the sessionmaker of the engine."""
    maker = create_sessionmaker(engine)
    async with transaction(maker) as db:
        await make_user(db, email)
    return maker


async def committed(db: AsyncSession, statement: str, **params: Any) -> None:
    """Change counters as the throttle writes them: committed, outside the test's transaction
    (whose row locks would hold the next attempt up until the test ends)."""
    async with fastpath.engine_of(db).begin() as connection:
        await connection.execute(text(statement), params)


async def wait_over(db: AsyncSession) -> None:
    """Move every counter's delay into the past, as if the client had waited it out."""
    await committed(db, "UPDATE throttles SET blocked_until = now()")


async def test_thirty_wrong_passwords_from_one_address_are_refused_before_any_hash(
    db_session: AsyncSession, verifications: list[str]
) -> None:
    await make_user(db_session, "ada@example.com")

    outcomes = [await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER) for _ in range(30)]

    assert outcomes[:6] == ["failed"] * 6  # five free failures, and the one that starts a delay
    assert outcomes[6:] == [1] * 24  # ThrottledError(retry_after=1), each without a hash
    assert verifications == [WRONG] * 6
    # The owner, from another network, gets in; the attacker's neighbours do not.
    assert await log_in(db_session, "ADA@example.com", PASSWORD, ip=OWNER) == "ok"
    assert await log_in(db_session, "ada@example.com", PASSWORD, ip="203.0.113.200") == 1


async def test_the_delay_doubles_with_each_failure_up_to_the_longest(
    db_session: AsyncSession,
) -> None:
    await make_user(db_session, "grace@example.com")
    for _ in range(6):
        await log_in(db_session, "grace@example.com", WRONG, ip=ATTACKER)

    waits = []
    for _ in range(4):
        waits.append(await log_in(db_session, "grace@example.com", WRONG, ip=ATTACKER))
        await wait_over(db_session)
        assert await log_in(db_session, "grace@example.com", WRONG, ip=ATTACKER) == "failed"
    assert waits == [1, 2, 4, 8]

    key = throttle.attempt("login", "grace@example.com", "203.0.113.0/24").account
    await committed(db_session, "UPDATE throttles SET failures = 40 WHERE key = :key", key=key)
    await wait_over(db_session)
    assert await log_in(db_session, "grace@example.com", WRONG, ip=ATTACKER) == "failed"
    assert await log_in(db_session, "grace@example.com", WRONG, ip=ATTACKER) == 15 * 60


async def test_a_success_starts_the_account_over(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    for _ in range(5):
        await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER)

    assert await log_in(db_session, "ada@example.com", PASSWORD, ip=ATTACKER) == "ok"

    key = throttle.attempt("login", "ada@example.com", "203.0.113.0/24").account
    assert await counter(db_session, key) is None
    outcomes = [await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER) for _ in range(7)]
    assert outcomes == ["failed"] * 6 + [1]


async def test_a_quiet_window_starts_a_counter_over(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    for _ in range(7):
        await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER)
    await committed(
        db_session,
        "UPDATE throttles SET last_attempt_at = now() - interval '25 hours', blocked_until = now()",
    )

    assert await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER) == "failed"

    key = throttle.attempt("login", "ada@example.com", "203.0.113.0/24").account
    assert (await counter(db_session, key)).failures == 1


async def test_a_burst_of_concurrent_guesses_is_counted_before_hashing(
    engine: AsyncEngine, verifications: list[str]
) -> None:
    maker = await with_user(engine, "ada@example.com")

    async def guess() -> Outcome:
        async with transaction(maker) as db:  # a request of its own
            return await log_in(db, "ada@example.com", WRONG, ip=ATTACKER)

    outcomes = await asyncio.gather(*(guess() for _ in range(40)))

    assert sorted(outcomes, key=str) == sorted(["failed"] * 6 + [1] * 34, key=str)
    assert len(verifications) == 6


@pytest.mark.usefixtures("cheap_hashing")
async def test_the_network_counts_every_account_together(db_session: AsyncSession) -> None:
    limits = ThrottleSettings(_env_file=None, network_free_failures=3)
    outcomes = [
        await log_in(db_session, f"user{n}@example.com", WRONG, ip=ATTACKER, limits=limits)
        for n in range(6)
    ]
    assert outcomes == ["failed"] * 4 + [1, 1]
    assert await log_in(db_session, "other@example.com", WRONG, ip=OWNER, limits=limits) == "failed"


@pytest.mark.usefixtures("cheap_hashing")
async def test_successes_give_their_attempt_back_to_the_network(db_session: AsyncSession) -> None:
    limits = ThrottleSettings(_env_file=None, network_free_failures=3)
    await users.create(db_session, UserCreate(email="ada@example.com", password=PASSWORD))  # type: ignore[arg-type]

    logins = [
        await log_in(db_session, "ada@example.com", PASSWORD, ip=ATTACKER, limits=limits)
        for _ in range(10)
    ]

    assert logins == ["ok"] * 10
    network = throttle.attempt("login", "-", "203.0.113.0/24").network
    assert network is not None
    assert (await counter(db_session, network)).failures == 0


async def test_the_failure_counts_when_the_callers_transaction_rolls_back(
    engine: AsyncEngine,
) -> None:
    maker = await with_user(engine, "ada@example.com")

    outcomes = []

    async def log_in_and_refuse() -> None:
        async with transaction(maker) as db:
            outcomes.append(await log_in(db, "ada@example.com", WRONG, ip=ATTACKER))
            raise HandlerRefusedError  # a handler that raises on a failed login rolls back

    for _ in range(7):
        with pytest.raises(HandlerRefusedError):
            await log_in_and_refuse()
    assert outcomes == ["failed"] * 6 + [1]


async def test_the_requests_client_is_the_default_address(db_session: AsyncSession) -> None:
    await make_user(db_session, "ada@example.com")
    with client(ATTACKER, "curl/8"):
        for _ in range(6):
            assert await log_in(db_session, "ada@example.com", WRONG) == "failed"

    assert await log_in(db_session, "ada@example.com", WRONG, ip=ATTACKER) == 1
    with client(OWNER):
        assert await log_in(db_session, "ada@example.com", PASSWORD) == "ok"


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        (" 203.0.113.250 ", "203.0.113.0/24"),
        ("::ffff:203.0.113.9", "203.0.113.0/24"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
    ],
)
def test_networks(address: str, network: str) -> None:
    assert throttle.network_of(address, ThrottleSettings(_env_file=None)) == network


async def test_an_address_that_is_not_one_is_refused_without_repeating_it(
    db_session: AsyncSession,
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await users.authenticate(db_session, "a@example.com", WRONG, ip="Xq7-not-an-address")

    assert caught.value.field == "ip"
    assert "Xq7" not in str(caught.value)


@pytest.fixture
def blocking_guesses(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """Make every verification of ``WRONG`` block until the test ends; yield the most that
    ran at once."""
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most
    real = passwords._verify

    def verify(password_hash: str, password: str) -> bool:
        if password != WRONG:
            return real(password_hash, password)
        with lock:
            running[0] += 1
            running[1] = max(running)
        release.wait(30)
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr(passwords, "_verify", verify)
    try:
        yield lambda: running[1]
    finally:
        release.set()


async def test_one_networks_guesses_leave_hashing_slots_to_other_networks(
    engine: AsyncEngine, blocking_guesses: Callable[[], int]
) -> None:
    maker = await with_user(engine, "ada@example.com")

    async def log_in_alone(email: str, password: str, address: str) -> Outcome:
        async with transaction(maker) as db:
            return await log_in(db, email, password, ip=address)

    guesses = [
        asyncio.ensure_future(log_in_alone(f"user{n}@example.com", WRONG, ATTACKER))
        for n in range(40)
    ]
    await asyncio.sleep(0.5)  # every guess has reached the hashing queue

    # The four slots would all be the guesses' without a share per network.
    owner = await asyncio.wait_for(log_in_alone("ada@example.com", PASSWORD, OWNER), timeout=10)

    assert owner == "ok"
    assert blocking_guesses() == 2  # half of PASSWORD_HASH_CONCURRENCY
    for guess in guesses:
        guess.cancel()
    await asyncio.gather(*guesses, return_exceptions=True)


async def test_purge_deletes_counters_quiet_for_the_window(db_session: AsyncSession) -> None:
    for n in range(3):
        await log_in(db_session, f"user{n}@example.com", WRONG, ip=ATTACKER)
    await committed(
        db_session,
        "UPDATE throttles SET last_attempt_at = now() - interval '2 days' WHERE key <> :network",
        network=throttle.attempt("login", "-", "203.0.113.0/24").network,
    )

    assert await throttle.purge_expired(db_session, batch_size=2) == 3
    assert await throttle.purge_expired(db_session) == 0  # the network's counter is recent
    assert await throttle.purge_expired(db_session, window=timedelta(days=3)) == 0
    with pytest.raises(InvalidInputError):
        await throttle.purge_expired(db_session, batch_size=0)
