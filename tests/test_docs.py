"""The documentation is tested: every Python block of ``docs/`` and the README runs in CI or is
type-checked under ``mypy --strict``, and the reference lists what the code exports and reads.

A block says which in its fence: ```` ```python test="run" ```` (run here, as a program of its
own, against a migrated database of its own in ``DATABASE_URL``), ``test="serve"`` with a
``path`` (an ``app`` served as written, lifespan and all, must answer 200 there),
``test="typecheck"``,
``test="tutorial"`` (a file of the tutorial: ``tests/test_downstream.py`` runs it, and it is
type-checked here as the project it belongs to), or ``test="skip"`` with a ``reason``.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, find_examples
from sqlalchemy.engine import URL

import app_db
from app_db.settings import (
    PasswordSettings,
    SessionSettings,
    Settings,
    ThrottleSettings,
    TokenSettings,
)
from tests import tutorial

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = list(find_examples(ROOT / "docs", ROOT / "README.md"))
KINDS = ("run", "serve", "typecheck", "tutorial", "skip")


def _hooks() -> Any:
    """The site's hook module, which generates the settings tables."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


variables = _hooks().variables


def kind(example: CodeExample) -> str:
    return example.prefix_settings().get("test", "")


def where(example: CodeExample) -> str:
    return f"{example.path.relative_to(ROOT)}:{example.start_line}"


def test_every_block_is_marked_and_there_are_enough() -> None:
    unmarked = [where(example) for example in EXAMPLES if kind(example) not in KINDS]
    assert unmarked == [], 'mark each block test="run", "typecheck", "tutorial" or "skip"'
    skipped = [e for e in EXAMPLES if kind(e) == "skip"]
    assert all(e.prefix_settings().get("reason") for e in skipped), "a skip needs a reason"
    assert len(EXAMPLES) >= 30
    assert len(EXAMPLES) - len(skipped) >= 30
    titles = {e.prefix_settings().get("title") for e in EXAMPLES if kind(e) == "tutorial"}
    assert titles == {path for path in tutorial.files() if path.endswith(".py")}


SERVE = """
from fastapi.testclient import TestClient

with TestClient(app) as client:  # runs the lifespan, as uvicorn would
    answer = client.get({path!r})
    assert answer.status_code == 200, (answer.status_code, answer.text)
"""


@pytest.mark.parametrize("example", [e for e in EXAMPLES if kind(e) in ("run", "serve")], ids=where)
def test_a_run_block_runs(example: CodeExample, own_database: URL, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "POSTGRES_"))}
    env["DATABASE_URL"] = own_database.render_as_string(hide_password=False)
    source = example.source
    if kind(example) == "serve":
        source += SERVE.format(path=example.prefix_settings()["path"])
    done = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where(example)}:\n{done.stdout}{done.stderr}"


@pytest.mark.cpu_heavy
def test_the_blocks_type_check(tmp_path: Path) -> None:
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    paths = []
    for number, example in enumerate(EXAMPLES):
        if kind(example) in ("run", "serve", "typecheck"):
            path = blocks / f"block_{number}.py"
            path.write_text(f"# {where(example)}\n{example.source}")
            paths.append(path)
    project = tmp_path / "tutorial"
    for name, text in tutorial.files().items():
        if name.endswith(".py"):
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(text)
    (project / "shop" / "__init__.py").write_text("")
    paths += sorted(project.rglob("*.py"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--explicit-package-bases",
            *map(str, paths),
        ],
        cwd=project,
        env={**os.environ, "MYPYPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_reference_lists_every_exported_name() -> None:
    page = (ROOT / "docs" / "reference" / "index.md").read_text()
    listed = re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE)
    assert sorted(listed) == sorted(app_db.__all__)


@pytest.mark.parametrize(
    "settings", [Settings, SessionSettings, PasswordSettings, ThrottleSettings, TokenSettings]
)
def test_the_settings_reference_names_the_variables_the_class_reads(
    settings: type[
        Settings | SessionSettings | PasswordSettings | ThrottleSettings | TokenSettings
    ],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each listed variable, set in the environment, reaches its field; none is left out."""
    documented = {name for name, _, meaning in variables(settings) if meaning}
    assert len(documented) == len(settings.model_fields)
    samples = {int: "24", float: "7.5", bool: "true"}
    monkeypatch.chdir(ROOT / "docs")  # no .env file here
    for name, field in settings.model_fields.items():
        variable = next(v for v in documented if v.endswith(name.upper()))
        if field.annotation in samples:
            monkeypatch.setenv(variable, samples[field.annotation])
            read = (
                settings(database_url="postgresql://h/db") if settings is Settings else settings()
            )
            assert str(getattr(read, name)).lower() in ("24", "7.5", "true"), variable
            monkeypatch.delenv(variable)


CLONE_ONLY = re.compile(r"compose\.yaml|\.env\.example|tests/test_\w+\.py|docker compose")


@pytest.mark.parametrize(
    "page", sorted((ROOT / "docs").rglob("*.md")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_a_page_that_needs_a_clone_says_so(page: Path) -> None:
    """A wheel user has no compose.yaml, no .env.example and no test files of app_db's."""
    text = page.read_text()
    if CLONE_ONLY.search(text) and page.name != "development.md":
        assert "repository" in text or "clone" in text, page


def test_the_tutorial_names_the_privilege_the_migration_needs() -> None:
    """``test_least_privilege.py`` shows it is this: CREATE on the database, or pg_trgm there."""
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    assert "`CREATE` on the database" in tutorial
    assert "pg_trgm" in tutorial
