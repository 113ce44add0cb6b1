"""The example app's OpenAPI document tells the truth: Schemathesis ``--checks all`` finds no
failure (undocumented statuses, bodies off their schema, schema-valid requests refused, wrong
``Allow`` headers, accepted invalid credentials).

The app is served by uvicorn on a database of its own, as a user serves it; Schemathesis runs
as its command line does, with ``tests/conformance/schemathesis.toml``. Bounded to about a
minute; ``APP_DB_ST_EXAMPLES`` asks for more examples per operation.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).parent / "conformance" / "schemathesis.toml"
EMAIL = "conformance@example.com"
PASSWORD = "a long conformance passphrase"
EXAMPLES = os.environ.get("APP_DB_ST_EXAMPLES", "15")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.cpu_heavy
def test_schemathesis_finds_no_failure(own_database: URL, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "POSTGRES_"))}
    env |= {"DATABASE_URL": url, "APP_DB_ST_EMAIL": EMAIL, "APP_DB_ST_PASSWORD": PASSWORD}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app_db.example.app:app", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                signup = httpx.post(
                    f"{base}/signup", json={"email": EMAIL, "password": PASSWORD}, timeout=5
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not answer within 60 s"
                time.sleep(0.2)
        assert signup.status_code == 201, signup.text
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                EXAMPLES,
                "--no-color",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    failures = run.stdout.find("FAILURES")
    report = run.stdout[max(failures, 0) :][:12000] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout
