"""CI helper: probe a PostgreSQL server, or create and drop a scratch database on it.

Usage: python .ci/pg.py probe SERVER_URL | create SERVER_URL | drop SERVER_URL DATABASE_URL
`create` prints the new database's URL; `drop` only drops databases that `create` made.
"""

import asyncio
import sys

import asyncpg
from sqlalchemy.engine import make_url

from app_db.testing.server import TestServer


async def probe(url: str) -> None:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain, timeout=3)
    await connection.close()


async def main(action: str, url: str, *args: str) -> None:
    server = TestServer(make_url(url).set(drivername="postgresql+asyncpg"), "ci", lambda: None)
    if action == "probe":
        await probe(url)
    elif action == "create":
        created = await server.create_database("ci_")
        sys.stdout.write(
            created.set(drivername="postgresql").render_as_string(hide_password=False) + "\n"
        )
    elif action == "drop":
        await server.drop_database(make_url(args[0]))
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
