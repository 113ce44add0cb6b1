"""``app-db createuser``: a first user, with the password from a prompt or standard input."""

import argparse
import asyncio
import getpass
import sys

from pydantic import SecretStr

from app_db import DuplicateEmailError, InvalidInputError, users
from app_db.cli.output import fail, say
from app_db.engine import create_engine, create_sessionmaker, dispose, transaction
from app_db.settings import Settings, load_settings


def read_password() -> str | None:
    """Return the password: asked twice at a terminal, else the first line of standard input.

    Never an argument: a command line is seen by every user of the machine and kept in shell
    histories.
    """
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _create(settings: Settings, email: str, name: str | None, password: str) -> str:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with transaction(create_sessionmaker(engine)) as db:
            data = {"email": email, "display_name": name, "password": SecretStr(password)}
            user = await users.create(db, data)  # type: ignore[arg-type] # validated there
        return str(user.id)
    finally:
        await dispose(engine)


def createuser_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    password = read_password()
    if password is None:
        return fail("the two passwords differ")
    try:
        user_id = asyncio.run(_create(settings, args.email, args.name, password))
    except DuplicateEmailError:
        return fail("a user with this email exists already")
    except InvalidInputError as error:
        return fail(f"{error.field or 'input'}: {error.details[0]['message']}")
    say(user_id)
    return 0
