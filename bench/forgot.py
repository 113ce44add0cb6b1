"""``users.forgot_password``: a known email and an unknown one take the same time.

    uv run python -m bench.forgot

200 requests of each, interleaved, each one transaction with its COMMIT, as a request is, at
the default settings; the throttle's counters are deleted before each request (untimed), so
none is refused. Prints the median of each and their difference (the goal: within 5 ms).
"""

import asyncio
import statistics
import sys
import time

from app_db import create_engine, create_sessionmaker, transaction, users
from app_db.engine import dispose
from app_db.testing import settings_for
from app_db.testing.server import find_test_server
from bench.database import create_database

REQUESTS = 200


async def main() -> None:
    server = find_test_server()
    url = await create_database(server)
    engine = create_engine(settings_for(url))
    maker = create_sessionmaker(engine)
    took: dict[str, list[float]] = {"known": [], "unknown": []}
    try:
        async with transaction(maker) as db:
            data = {"email": "ada@example.com", "password": "a long passphrase"}
            await users.create(db, data)  # type: ignore[arg-type]
        for n in range(REQUESTS + 10):
            for kind, email in (("known", "ada@example.com"), ("unknown", "nobody@example.com")):
                async with engine.begin() as connection:
                    await connection.exec_driver_sql("DELETE FROM throttles")
                started = time.perf_counter()
                async with transaction(maker) as db:
                    token = await users.forgot_password(db, email, ip="203.0.113.7")
                elapsed = time.perf_counter() - started
                assert (token is not None) == (kind == "known")
                if n >= 10:  # the first ten warm the pool and the statement cache
                    took[kind].append(elapsed * 1000)
    finally:
        await dispose(engine)
        await server.drop_database(url)
        server.close()
    known, unknown = (statistics.median(took[k]) for k in ("known", "unknown"))
    sys.stdout.write(
        f"forgot_password, {REQUESTS} of each, median: known email {known:.2f} ms,"
        f" unknown email {unknown:.2f} ms, difference {abs(known - unknown):.2f} ms\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
