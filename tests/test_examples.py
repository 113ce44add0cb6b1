"""The scripts in examples/ run as their docstrings say."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_twice(own_database: URL) -> None:
    url = own_database.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "POSTGRES_"))}
    for _ in range(2):  # the second run finds the user already there
        done = subprocess.run(
            [sys.executable, "-m", "examples.quickstart"],
            cwd=ROOT,
            env=env | {"DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "ada@example.com logged in: session valid = True\n"
