"""Workload 6: what the rolled-back isolation costs per test, and the whole suite's wall time."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_TESTS = 300

PROBE = textwrap.dedent(
    """
    import pytest
    from sqlmodel.ext.asyncio.session import AsyncSession

    @pytest.mark.parametrize("i", range({n}))
    async def test_bare(i: int) -> None:
        assert i >= 0

    @pytest.mark.parametrize("i", range({n}))
    async def test_isolated(db_session: AsyncSession, i: int) -> None:
        assert db_session.in_transaction() or i >= 0
    """
)

RECORDER = textwrap.dedent(
    """
    import json, os
    durations = {}

    def pytest_runtest_logreport(report):
        durations[report.nodeid] = durations.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(session):
        with open(os.environ["BENCH_DURATIONS"], "w") as out:
            json.dump(durations, out)
    """
)


def fixture_overhead_ms() -> float:
    """Mean setup+call+teardown of a test using ``db_session`` minus one that does not."""
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        (base / "test_probe.py").write_text(PROBE.format(n=PROBE_TESTS))
        (base / "bench_recorder.py").write_text(RECORDER)
        out = base / "durations.json"
        env = {**os.environ, "BENCH_DURATIONS": str(out), "PYTHONPATH": folder}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "bench_recorder",
                "-p",
                "no:cacheprovider",
                "-o",
                "asyncio_mode=auto",
                "-o",
                "asyncio_default_fixture_loop_scope=session",
                "-o",
                "asyncio_default_test_loop_scope=session",
                "--rootdir",
                folder,
                str(base / "test_probe.py"),
            ],
            check=True,
            env=env,
            cwd=folder,
            capture_output=True,
        )
        durations: dict[str, float] = json.loads(out.read_text())
    bare = sorted(v for k, v in durations.items() if "test_bare" in k)[:-1]
    isolated = sorted(v for k, v in durations.items() if "test_isolated" in k)[:-1]
    return (sum(isolated) / len(isolated) - sum(bare) / len(bare)) * 1000


def suite_wall_time_s() -> tuple[float, str]:
    """Run the project's own suite once and return its wall time and pytest's last line."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]
