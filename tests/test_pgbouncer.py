"""Behind a real PgBouncer in transaction mode: 0 errors with the switch, errors without."""

import asyncio
import os
import sys
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL

from app_db import (
    DatabaseUnavailableError,
    SessionSettings,
    Settings,
    create_engine,
    create_sessionmaker,
    customers,
    sessions,
    transaction,
    users,
)
from app_db.models import CustomerCreate, UserCreate
from app_db.security import passwords
from tests.pgbouncer import binary, pgbouncer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(binary() is None, reason="needs pgbouncer (apt-get install pgbouncer)"),
]
TASKS = 50
ROUNDS = 4
DUE = (
    "UPDATE sessions SET created_at = now() - interval '3 hours',"
    " last_seen_at = now() - interval '2 hours' WHERE id = :id"
)
AGE = "SELECT now() - last_seen_at FROM sessions WHERE id = :id"


async def load(url: URL, *, switch: bool) -> tuple[int, Counter[str]]:
    """Run the API's core operations from 50 tasks; return the request count and the errors."""
    engine = create_engine(
        Settings(
            _env_file=None,
            database_url=SecretStr(url.render_as_string(hide_password=False)),
            database_pgbouncer=switch,
            database_statement_timeout_ms=30_000 if switch else 0,
            database_pool_size=20,
            database_max_overflow=40,
        )
    )
    maker = create_sessionmaker(engine)
    errors: Counter[str] = Counter()
    requests = 0

    async def task(n: int) -> None:
        nonlocal requests
        for i in range(ROUNDS):
            email = f"pgb-{n}-{i}-{uuid.uuid4().hex[:6]}@example.com"
            steps = 0
            try:
                async with transaction(maker) as db:
                    user = await users.create(
                        db, UserCreate.model_validate({"email": email, "password": "long enough"})
                    )
                    token, _ = await sessions.issue(db, user.id)
                    await customers.create(db, CustomerCreate(name=f"pgb {n}-{i}"))
                    steps += 3
                async with transaction(maker) as db:
                    assert await sessions.validate(db, token) is not None
                    assert await users.get_by_email(db, email) is not None
                    await customers.list(db, limit=10, search="pgb")
                    await customers.bulk_import(db, [{"name": f"bulk {n}-{i}"}])
                    steps += 4
                async with transaction(maker) as db:  # the login throttle commits on its own
                    address = f"10.{n}.{i}.1"
                    assert await users.authenticate(db, email, "wrong!", ip=address) is None
                    assert await users.authenticate(db, email, "long enough", ip=address)
                    steps += 2
                async with transaction(maker) as db:
                    assert await sessions.revoke(db, token)
                    steps += 1
            except Exception as exc:
                errors[type(exc).__name__] += 1
            requests += steps

    try:
        async with asyncio.timeout(90):
            await asyncio.gather(*(task(n) for n in range(TASKS)))
    finally:
        await engine.dispose()
    return requests, errors


async def test_pgbouncer_transaction_mode(
    own_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    with pgbouncer(own_database) as through:
        with_switch = await load(through, switch=True)
        without_switch = await load(through, switch=False)

    print(  # noqa: T201 - the figures the README quotes
        f"\nPgBouncer 1.18, transaction mode, server pool 5, {TASKS} tasks:"
        f" with DATABASE_PGBOUNCER: {with_switch[0]} operations, errors {dict(with_switch[1])};"
        f" without: {without_switch[0]} operations, errors {dict(without_switch[1])}"
    )
    assert with_switch[1] == Counter()
    assert with_switch[0] == TASKS * ROUNDS * 10
    assert sum(without_switch[1].values()) > 0


async def test_without_the_switch_the_error_names_it(own_database: URL) -> None:
    """At the defaults, PgBouncer refuses asyncpg's statement_timeout at connect time."""
    with pgbouncer(own_database) as through:
        url = SecretStr(through.render_as_string(hide_password=False))
        engine = create_engine(Settings(_env_file=None, database_url=url))
        try:
            with pytest.raises(DatabaseUnavailableError) as refused:
                async with transaction(create_sessionmaker(engine)) as db:
                    await users.get_by_email(db, "a@example.com")
        finally:
            await engine.dispose()
        env = {**os.environ, "DATABASE_URL": url.get_secret_value()}
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app_db.cli", "check", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, said = await asyncio.wait_for(check.communicate(), timeout=60)

    assert "DATABASE_PGBOUNCER=true" in str(refused.value)
    assert check.returncode == 1
    assert "DATABASE_PGBOUNCER=true" in said.decode()
    assert len(said.decode().strip().splitlines()) == 1


async def test_a_due_touch_is_kept_behind_pgbouncer(own_database: URL) -> None:
    """validate's touch, sent on a borrowed connection through SQLAlchemy, is committed."""
    policy = SessionSettings(
        _env_file=None,
        idle_timeout=timedelta(days=1),
        max_lifetime=timedelta(days=2),
        touch_interval=timedelta(hours=1),
    )
    with pgbouncer(own_database) as through:
        url = SecretStr(through.render_as_string(hide_password=False))
        engine = create_engine(Settings(_env_file=None, database_url=url, database_pgbouncer=True))
        maker = create_sessionmaker(engine)
        try:
            async with transaction(maker) as db:
                user = await users.create(
                    db,
                    UserCreate.model_validate(
                        {"email": "t@example.com", "password": "long enough"}
                    ),
                )
                token, issued = await sessions.issue(db, user.id, settings=policy)
            ages = []
            for validate_with in ("session", "engine"):
                async with engine.begin() as connection:
                    await connection.execute(text(DUE), {"id": issued.id})
                if validate_with == "session":
                    async with transaction(maker) as db:
                        assert await sessions.validate(db, token, settings=policy) is not None
                else:
                    assert await sessions.validate(engine, token, settings=policy) is not None
                async with engine.connect() as connection:
                    ages.append(await connection.scalar(text(AGE), {"id": issued.id}))
        finally:
            await engine.dispose()

    assert all(age < timedelta(minutes=1) for age in ages), ages
