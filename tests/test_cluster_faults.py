"""Faults that need a cluster of the test's own: a server restart, and password logins."""

import asyncio
import logging
import time
import traceback

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app_db import (
    AppDBError,
    DatabaseUnavailableError,
    Settings,
    create_engine,
    create_sessionmaker,
    health,
    transaction,
    users,
)
from app_db.errors import ConfigurationError
from app_db.settings import load_settings
from app_db.testing.embedded import EmbeddedCluster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]
PASSWORD = "Sw0rdfish-never-logged"


def url_for(cluster: EmbeddedCluster, password: str | None = None) -> str:
    url = cluster.admin_url.set(drivername="postgresql", password=password)
    return url.render_as_string(hide_password=False)


async def test_server_restart_is_survived(cluster: EmbeddedCluster) -> None:
    engine = create_engine(
        Settings(_env_file=None, database_url=SecretStr(url_for(cluster)), database_pool_size=3)
    )
    maker = create_sessionmaker(engine)

    async def request() -> None:
        async with transaction(maker) as db:
            await users.get_by_email(db, "nobody@example.com")
            await (await db.connection()).execute(text("SELECT 1"))

    try:
        await asyncio.gather(*(request() for _ in range(3)))
        await asyncio.to_thread(cluster.restart, down_for=0.5)
        restarted = time.monotonic()
        failures = 0
        async with asyncio.timeout(15):
            while True:
                try:
                    await request()
                    break
                except DatabaseUnavailableError:
                    failures += 1
                    await asyncio.sleep(0.05)
        recovered_ms = (time.monotonic() - restarted) * 1000
        await asyncio.gather(*(request() for _ in range(6)))
        report = await health.check(engine)
    finally:
        await engine.dispose()

    print(f"\nafter a restart: {failures} failed requests, recovered in {recovered_ms:.0f} ms")  # noqa: T201
    assert report.ok
    assert failures <= 3


async def test_passwords_never_reach_logs_reprs_or_errors(
    cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    admin = create_engine(Settings(_env_file=None, database_url=SecretStr(url_for(cluster))))
    async with admin.begin() as connection:
        await connection.execute(text(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"))
        await connection.execute(
            text("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app")
        )
    await admin.dispose()
    cluster.configure(hba="local all all scram-sha-256\n")
    await asyncio.to_thread(cluster.restart)

    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    good = cluster.admin_url.set(drivername="postgresql", username="app", password=PASSWORD)
    attempts = {
        "right password": good,
        "wrong password": good.set(password=PASSWORD[::-1]),
        "closed port": good.set(host="127.0.0.1", port=1, query={}),
    }
    for name, url in attempts.items():
        settings = Settings(
            _env_file=None,
            database_url=SecretStr(url.render_as_string(hide_password=False)),
            database_echo=True,
            database_connect_timeout=3,
        )
        engine = create_engine(settings)
        seen += [repr(settings), str(settings), repr(engine), str(engine.url), repr(engine.url)]
        try:
            async with transaction(create_sessionmaker(engine)) as db:
                await users.get_by_email(db, "someone@example.com")
                await (await db.connection()).execute(text("SELECT current_user"))
            seen.append(f"{name}: ok")
        except (AppDBError, Exception) as exc:
            seen.append(f"{name}: " + "".join(traceback.format_exception(exc)))
        finally:
            await engine.dispose()
    for bad in (
        f"postgresql://app:{PASSWORD}@db:notaport/app",
        f"mysql://app:{PASSWORD}@db/app",
        f"postgresql+psycopg://app:{PASSWORD}@db/app",
    ):
        try:
            load_settings(_env_file=None, database_url=bad)
        except ConfigurationError as exc:
            seen.append("".join(traceback.format_exception(exc)))
    seen += [record.getMessage() for record in caplog.records]
    seen += [caplog.text]

    assert "right password: ok" in seen
    assert any(line.startswith("wrong password: Traceback") for line in seen)
    assert any(line.startswith("closed port: Traceback") for line in seen)
    assert any("SELECT current_user" in record.getMessage() for record in caplog.records)
    leaks = [line for line in seen if PASSWORD in line]
    assert leaks == []
