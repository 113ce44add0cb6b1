"""Workload 8, end to end: the example app against the same routes on raw asyncpg, over HTTP.

Both apps run under uvicorn (one worker, no access log) on one benchmark database; ``wrk
-t1 -c32`` sends ``GET /me`` and ``GET /customers`` with the session cookies of many users,
the two apps in turn, round after round. Figures are requests per second (median of the
rounds), the example app's against raw asyncpg's (``bench.raw_app``). A non-2xx answer, or
any log line at WARNING or above from either app, fails the run.

    uv run python -m bench.http            # 3 rounds of 6 s per route and app
    uv run python -m bench.http --smoke    # 1 round of 1 s: does it run?
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from app_db.testing.server import TestServer, find_test_server
from bench.database import create_database, plain_dsn, seed
from bench.harness import Series

ROUTES = ("/me", "/customers")
APPS = {"raw": "bench.raw_app:app", "lib": "app_db.example.app:app"}
OWNERS = 100
"""The users who own the customers; ``/customers`` is requested with their cookies."""
SCRIPT = """
local tokens = {%s}
local i = 0
request = function()
  i = i + 1
  local cookie = "__Host-session=" .. tokens[(i %% #tokens) + 1]
  return wrk.format("GET", wrk.path, {["Cookie"] = cookie})
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, deadline: float) -> None:
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/me", timeout=1)
        except urllib.error.HTTPError:
            return  # 401 without a cookie: the app is up
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app on port {port} did not start") from None
            time.sleep(0.1)
        else:
            return


@contextmanager
def _served(target: str, url: URL, log: Path) -> Iterator[int]:
    """Serve ``target`` with uvicorn on a free port; its stderr goes to ``log``."""
    port = _free_port()
    env = os.environ | {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "BENCH_DSN": plain_dsn(url),
    }
    command = [sys.executable, "-m", "uvicorn", target, "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    with log.open("w") as err:
        process = subprocess.Popen(command, env=env, stdout=err, stderr=err)
        try:
            _wait_ready(port, time.monotonic() + 30)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wrk(binary: str, port: int, route: str, script: Path, seconds: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}{route}"
    done = subprocess.run(
        [binary, "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}"],
        check=True,
        capture_output=True,
        text=True,
    )
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests on {route}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rate": rate, "p99_ms": float(p99[1]) * scale[p99[2]] if p99 else float("nan")}


async def _own_customers(url: URL, user_ids: list[Any]) -> None:
    """Give the customers to the first users, about evenly, as an app's users would hold them."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        await connection.execute(
            "UPDATE customers SET owner_id = ($1::uuid[])[1 + abs(hashtext(id::text)) % $2]",
            user_ids[:OWNERS],
            OWNERS,
        )
        await connection.execute("VACUUM ANALYZE customers")
    finally:
        await connection.close()


async def prepare(server: TestServer, *, smoke: bool) -> tuple[URL, list[str]]:
    url = await create_database(server)
    data = await seed(url, users=200 if smoke else 2000, customers=2000 if smoke else 20_000)
    await _own_customers(url, data.user_ids)
    return url, data.tokens


def measure(url: URL, tokens: list[str], *, rounds: int, seconds: int) -> list[dict[str, Any]]:
    """Return, per route, each app's median rate and p99 and the example app's ratio."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk, brew install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scripts = {
            "/me": folder / "me.lua",
            "/customers": folder / "customers.lua",
        }
        quoted = [f'"{t}"' for t in tokens]
        scripts["/me"].write_text(SCRIPT % ", ".join(quoted))
        scripts["/customers"].write_text(SCRIPT % ", ".join(quoted[:OWNERS]))
        logs = {name: folder / f"{name}.log" for name in APPS}
        with (
            _served(APPS["raw"], url, logs["raw"]) as raw,
            _served(APPS["lib"], url, logs["lib"]) as lib,
        ):
            ports = {"raw": raw, "lib": lib}
            rows = []
            for route in ROUTES:
                for port in ports.values():  # untimed: every pooled connection prepares
                    _wrk(binary, port, route, scripts[route], 2)
                rates = {name: Series() for name in APPS}
                p99 = {name: Series() for name in APPS}
                for _ in range(rounds):
                    for name, port in ports.items():
                        figures = _wrk(binary, port, route, scripts[route], seconds)
                        rates[name].values.append(figures["rate"])
                        p99[name].values.append(figures["p99_ms"])
                rows.append(
                    {
                        "route": route,
                        "requests_per_s": {n: s.median for n, s in rates.items()},
                        "spread": {n: s.spread for n, s in rates.items()},
                        "p99_ms": {n: s.median for n, s in p99.items()},
                        "ratio": rates["lib"].median / rates["raw"].median,
                    }
                )
        complaints = {n: log.read_text().strip() for n, log in logs.items()}
    for name, text in complaints.items():
        if text:
            raise RuntimeError(f"the {name} app logged during the load:\n{text}")
    return rows


def report(rows: list[dict[str, Any]] | str | None) -> str:
    """Return the table of ``measure``'s rows (or why it did not run)."""
    if rows is None:
        return ""
    if isinstance(rows, str):
        return f"\nend to end over HTTP: {rows}\n"
    lines = ["\nend to end over HTTP (wrk -t1 -c32, uvicorn, 1 worker; requests/s, median)\n"]
    for row in rows:
        rates, p99 = row["requests_per_s"], row["p99_ms"]
        low, high = row["spread"]["lib"]
        lines.append(
            f"  GET {row['route']:12} raw asyncpg {rates['raw']:7.0f}   app_db example "
            f"{rates['lib']:7.0f}   ratio {row['ratio']:.2f}   p99 ms {p99['raw']:.1f} / "
            f"{p99['lib']:.1f}   app_db spread {low:.0f}..{high:.0f}\n"
        )
    return "".join(lines)


async def _drop(server: TestServer, url: URL) -> None:
    await server.drop_database(url)


def run(server: TestServer, *, smoke: bool, rounds: int = 3) -> list[dict[str, Any]]:
    url, tokens = asyncio.run(prepare(server, smoke=smoke))
    try:
        return measure(url, tokens, rounds=1 if smoke else rounds, seconds=1 if smoke else 6)
    finally:
        asyncio.run(_drop(server, url))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    server = find_test_server()
    try:
        rows = run(server, smoke=args.smoke, rounds=args.rounds)
    finally:
        server.close()
    sys.stdout.write(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
