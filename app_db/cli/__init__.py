"""The ``app-db`` command: ``dev``, ``migrate``, ``check``, ``purge``, ``createuser`` and
``migrations``.

Every failure is one line on stderr and a non-zero exit: 2 for a bad argument or setting,
1 for a database that cannot be reached or used.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import asyncpg
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from app_db import sessions
from app_db.cli.accounts import createuser_command
from app_db.cli.database import check_command, migrate_command, purge_command
from app_db.cli.dev import dev_command
from app_db.cli.output import fail, innermost, masked, reason, say, scrub
from app_db.errors import (
    AppDBError,
    ConfigurationError,
    DatabaseUnavailableError,
    hint,
    typed_error,
)
from app_db.scaffold import ScaffoldError, init_project
from app_db.settings import load_settings

_DATABASE_ERRORS = (AppDBError, SQLAlchemyError, asyncpg.PostgresError, OSError, CommandError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"app-db: {message} (see {self.prog} --help)\n")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def init_command(args: argparse.Namespace) -> int:
    written = init_project(Path.cwd(), models=args.models, path=args.path, branch=args.branch)
    for path in written:
        say(f"wrote {path.relative_to(Path.cwd())}{'/' if path.is_dir() else ''}")
    say("next: app-db migrate, then alembic revision --autogenerate -m <message>")
    return 0


DESCRIPTION = (
    "app_db's command line: serve the example app (dev), migrate and check a database, purge "
    "what has expired, create a user, and set up a project's own migrations. Every failure is "
    "one line on stderr: exit 2 for a bad argument or setting, 1 for a database that cannot "
    "be reached or used."
)


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="app-db", description=DESCRIPTION)
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    dev = commands.add_parser("dev", help="serve the example app on a migrated database")
    dev.add_argument("--host", default="127.0.0.1", help="the address to serve on")
    dev.add_argument("--port", type=int, default=8000, help="the port to serve on")
    dev.add_argument(
        "--trace", action="store_true", help="print each request's spans as a tree on stdout"
    )
    dev.set_defaults(run=dev_command)
    for name, run, text in (
        ("migrate", migrate_command, "upgrade the database to every head"),
        ("check", check_command, "report the server, the revisions and the pool"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--config", type=Path, help="the project's alembic.ini (default: ./alembic.ini if any)"
        )
        command.set_defaults(run=run)
    purge = commands.add_parser(
        "purge",
        aliases=["purge-sessions"],
        help="delete expired sessions, quiet login counters and spent tokens in batches",
    )
    purge.add_argument(
        "--batch-size",
        type=_positive,
        default=sessions.DEFAULT_PURGE_BATCH,
        help="rows deleted per transaction",
    )
    purge.set_defaults(run=purge_command)
    create = commands.add_parser(
        "createuser",
        help="create a user; the password is asked at the terminal, or read from standard input",
    )
    create.add_argument("--email", required=True, help="the user's email")
    create.add_argument("--name", help="the user's display name")
    create.set_defaults(run=createuser_command)
    migrations = commands.add_parser("migrations", help="set up this project's own migrations")
    actions = migrations.add_subparsers(dest="action", required=True, parser_class=_Parser)
    init = actions.add_parser("init", help="write alembic.ini and an async env.py here")
    init.add_argument("--models", required=True, help="the module that defines the app's tables")
    init.add_argument("--path", default="migrations", help="the folder for env.py and versions/")
    init.add_argument("--branch", help="the branch label (default: the module's package)")
    init.set_defaults(run=init_command)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code."""
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (ConfigurationError, ScaffoldError) as exc:
        return fail(str(exc), 2)
    except FileNotFoundError as exc:
        return fail(str(exc), 2)
    except _DATABASE_ERRORS as exc:
        return _database_failure(exc)
    return code


def _database_failure(error: BaseException) -> int:
    settings = load_settings()
    unreachable = isinstance(error, OSError | DatabaseUnavailableError) or isinstance(
        typed_error(error), DatabaseUnavailableError
    )
    verb = "reach" if unreachable else "use"
    detail = scrub(reason(error), settings.sqlalchemy_url()) + hint(innermost(error))
    return fail(f"cannot {verb} {masked(settings)}: {detail}")
