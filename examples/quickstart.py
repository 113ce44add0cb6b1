"""Sign a user up, log in, and check the session token: app_db's API in one script.

Against the database that DATABASE_URL names, migrated with ``app-db migrate``:

    DATABASE_URL=postgresql://... uv run python -m examples.quickstart
"""

import asyncio
import sys

from pydantic import SecretStr

from app_db import UserCreate, create_engine, create_sessionmaker, sessions, transaction, users
from app_db.engine import dispose

EMAIL = "ada@example.com"
PASSWORD = SecretStr("correct horse battery")


async def main() -> None:
    engine = create_engine()  # settings from the environment; connects on first use
    sessionmaker = create_sessionmaker(engine)
    try:
        async with transaction(sessionmaker) as db:  # commits when the block succeeds
            if await users.get_by_email(db, EMAIL) is None:
                await users.create(db, UserCreate(email=EMAIL, password=PASSWORD))
        async with transaction(sessionmaker) as db:
            user = await users.authenticate(db, EMAIL, PASSWORD)
            if user is None:
                raise SystemExit("wrong email or password")
            token, _ = await sessions.issue(db, user.id)  # the token is shown once
        async with transaction(sessionmaker) as db:
            found = await sessions.validate(db, token)  # on every request
        sys.stdout.write(f"{EMAIL} logged in: session valid = {found is not None}\n")
    finally:
        await dispose(engine)


if __name__ == "__main__":
    asyncio.run(main())
