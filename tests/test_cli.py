"""The app-db command, run as a real process against real databases."""

import argparse
import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from app_db import create_sessionmaker, transaction, users
from app_db.cli import parser
from app_db.engine import create_engine
from app_db.testing import settings_for

PASSWORD_MARK = "pw-must-not-show"
DATABASE_VARIABLES = ("DATABASE_URL", "POSTGRES_HOST", "POSTGRES_USER", "POSTGRES_DB")


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
    return env | extra


def with_password(url: URL) -> str:
    """The URL with a password set: trust auth ignores it, and it must never be printed."""
    return url.set(drivername="postgresql", password=PASSWORD_MARK).render_as_string(
        hide_password=False
    )


async def app_db(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app_db.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def schema_fingerprint(url: URL) -> list[tuple[object, ...]]:
    engine = create_engine(settings_for(url), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public' ORDER BY 1, 2"
                )
            )
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return [*map(tuple, rows), ("version", version)]
    finally:
        await engine.dispose()


async def test_migrate_builds_a_fresh_database_and_is_idempotent(empty_database: URL) -> None:
    env = environment(DATABASE_URL=with_password(empty_database))

    code, applied = await app_db("migrate", env=env)
    assert code == 0, applied
    first = await schema_fingerprint(empty_database)
    code, out = await app_db("migrate", env=env)
    assert code == 0, out

    assert await schema_fingerprint(empty_database) == first
    assert ("version", "app_db_0001") in first
    assert applied.splitlines()[0].startswith("applied app_db_0001: Initial schema: users, ")
    assert applied.splitlines()[1].endswith("is at head (app_db_0001)")
    assert out.strip().endswith("is at head (app_db_0001): nothing to do")
    assert "applied" not in out
    assert PASSWORD_MARK not in applied + out


async def test_check_reports_head_pool_and_no_password(app_db_database: URL) -> None:
    code, out = await app_db("check", env=environment(DATABASE_URL=with_password(app_db_database)))

    assert code == 0, out
    assert "revision: app_db_0001 (at head)" in out
    assert "server: PostgreSQL" in out
    assert "pool: size 10" in out
    assert "probe: SELECT 1 in " in out
    assert "pool now 0 in use, 1 idle, 0 overflow, 0 waiting; since start 0 timeouts" in out
    assert "***" in out
    assert PASSWORD_MARK not in out


async def test_check_fails_behind_head(empty_database: URL) -> None:
    code, out = await app_db("check", env=environment(DATABASE_URL=with_password(empty_database)))

    assert code == 1
    assert "behind head" in out
    assert PASSWORD_MARK not in out


async def test_check_fails_fast_on_a_closed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = environment(
        DATABASE_URL=f"postgresql://app:{PASSWORD_MARK}@127.0.0.1:{port}/app",
        DATABASE_CONNECT_TIMEOUT="3",
    )

    started = time.monotonic()
    code, out = await app_db("check", env=env)

    assert code == 1
    assert time.monotonic() - started < 15
    assert out.startswith("app-db: cannot reach postgresql+asyncpg://app:***@127.0.0.1")
    assert len(out.strip().splitlines()) == 1
    assert PASSWORD_MARK not in out


async def test_without_configuration_it_fails_with_the_settings_error(tmp_path: Path) -> None:
    code, out = await app_db("migrate", env=environment(), cwd=tmp_path)

    assert code == 2
    assert "set DATABASE_URL, or POSTGRES_HOST" in out


async def test_purge_deletes_expired_sessions_and_quiet_login_counters(empty_database: URL) -> None:
    env = environment(DATABASE_URL=with_password(empty_database))
    assert (await app_db("migrate", env=env))[0] == 0
    engine = create_engine(settings_for(empty_database), pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (email, password_hash) VALUES (:email, 'h')"),
                {"email": "p@example.com"},
            )
            await connection.execute(
                text(
                    "INSERT INTO sessions (user_id, token_hash, created_at, expires_at)"
                    " SELECT id, sha256(i::text::bytea), now() - interval '2 days',"
                    " now() - (i % 2) * interval '1 day' + interval '1 hour'"
                    " FROM users, generate_series(1, 7) AS i"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO throttles (key, failures, last_attempt_at, blocked_until)"
                    " SELECT sha256(i::text::bytea), 3, now() - i * interval '20 hours', now()"
                    " FROM generate_series(1, 3) AS i"
                )
            )
    finally:
        await engine.dispose()

    code, out = await app_db("purge", "--batch-size", "2", env=env)

    assert code == 0, out
    assert out.strip().endswith(
        "deleted 4 expired sessions, 2 quiet login counters and 0 spent or expired one-time tokens"
    )


DATABASE_COMMANDS = (("migrate",), ("check",), ("purge",), ("purge-sessions",))


async def test_every_command_refused_by_the_server_answers_in_one_line(
    app_db_database: URL,
) -> None:
    """An unknown role or database: one line on stderr, exit 1, no traceback, no password."""
    refused = {
        "unknown role": app_db_database.set(username="no_such_role_app_db"),
        "unknown database": app_db_database.set(database="app_db_test_no_such_database"),
    }
    for case, url in refused.items():
        for command in DATABASE_COMMANDS:
            code, out = await app_db(*command, env=environment(DATABASE_URL=with_password(url)))
            assert code == 1, (case, command, out)
            assert len(out.strip().splitlines()) == 1, (case, command, out)
            assert out.startswith("app-db: cannot reach postgresql+asyncpg://"), (case, out)
            assert "Traceback" not in out
            assert PASSWORD_MARK not in out


async def test_bad_arguments_answer_in_one_line(tmp_path: Path) -> None:
    for args in (
        ("purge", "--batch-size", "0"),
        ("purge-sessions", "--batch-size", "many"),
        ("check", "--config", str(tmp_path / "missing.ini")),
        ("migrations", "init", "--models", "not a module"),
        ("no-such-command",),
    ):
        code, out = await app_db(
            *args, env=environment(DATABASE_URL="postgresql://h/db"), cwd=tmp_path
        )
        assert code == 2, (args, out)
        assert len(out.strip().splitlines()) == 1, (args, out)
        assert out.startswith("app-db: "), (args, out)


async def app_db_with_input(*args: str, stdin: bytes, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app_db.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_createuser_reads_the_password_from_standard_input(own_database: URL) -> None:
    env = environment(DATABASE_URL=with_password(own_database))
    create = ("createuser", "--email", "a@example.com")

    code, out = await app_db_with_input(*create, stdin=b"a long passphrase 42\n", env=env)
    again = await app_db_with_input(*create, stdin=b"a long passphrase 42\n", env=env)
    weak = await app_db_with_input(
        "createuser", "--email", "b@example.com", stdin=b"password1\n", env=env
    )
    argument = await app_db("createuser", "--email", "c@example.com", "--password", "x", env=env)

    assert code == 0, out
    user_id = uuid.UUID(out.strip())
    engine = create_engine(settings_for(own_database))
    try:
        async with transaction(create_sessionmaker(engine)) as db:
            user = await users.authenticate(db, "a@example.com", "a long passphrase 42")
    finally:
        await engine.dispose()
    assert user is not None
    assert user.id == user_id
    assert again == (1, "app-db: a user with this email exists already\n")
    assert weak == (1, "app-db: password: is one of the most common passwords: choose another\n")
    assert argument[0] == 2
    assert "unrecognized arguments: --password x" in argument[1]
    assert len(argument[1].strip().splitlines()) == 1


def commands_of(root: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield root
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield from commands_of(command)


def test_every_option_has_a_plain_text_help() -> None:
    for command in commands_of(parser()):
        shown = command.format_help()
        assert "``" not in shown, command.prog
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{command.prog} {action.option_strings[0]}"
