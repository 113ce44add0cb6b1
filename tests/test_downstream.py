"""An app built on app_db from its wheel: its own table, migrations, CLI and tests.

Everything runs as a user would: the wheel is built and installed into fresh virtual
environments (no editable install), in a project folder that is not this repository.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from app_db.testing.plugin import run_in_thread
from app_db.testing.server import TestServer
from tests import tutorial

pytestmark = [pytest.mark.slow, pytest.mark.cpu_heavy]

ROOT = Path(__file__).resolve().parents[1]

TUTORIAL = tutorial.files()  # the tutorial's files: this test runs the tutorial as written
PYTEST_INI = TUTORIAL["pytest.ini"]
PYTEST_ASYNCIO_INI = (
    PYTEST_INI
    + """\
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""
)

TEST_TRIO = """\
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.mark.anyio
async def test_on_trio(db_session: AsyncSession) -> None:
    assert db_session
"""

TEST_ORDERS = """\
from pydantic import SecretStr
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import UserCreate, users
from shop.models import Order


async def test_a_user_places_an_order(db_session: AsyncSession) -> None:
    user = await users.create(
        db_session, UserCreate(email="buyer@example.com", password=SecretStr("correct horse"))
    )
    db_session.add(Order(user_id=user.id, item="book"))
    await db_session.flush()

    orders = (await db_session.exec(select(Order).where(Order.user_id == user.id))).all()
    assert [order.item for order in orders] == ["book"]
"""

TEST_UNRELATED = "def test_unrelated() -> None:\n    assert 1 + 1 == 2\n"
TEST_NEEDS_DB = """\
def test_needs_db(db_session: object) -> None:
    assert db_session


def test_needs_db_too(db_session: object) -> None:
    assert db_session
"""


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("the downstream test builds and installs the wheel with uv: pip install uv")
    return found


def run(
    *command: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    expect: int = 0,
    stdin: str | None = None,
) -> str:
    """Run a command; assert its exit code and return its output (stdout and stderr)."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == expect, f"{command} exited {done.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(_uv(), "build", "--wheel", "--out-dir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("app_db-*.whl")
    return built


def make_venv(folder: Path, *requirements: str) -> Path:
    """Create a virtual environment with these requirements; return its bin folder.

    The install compiles the bytecode once, as pip does: the test then starts a score of
    commands in it, which would otherwise compile their imports as they go.
    """
    uv = _uv()
    run(uv, "venv", "--quiet", "--python", sys.executable, folder, cwd=folder.parent)
    python = folder / "bin" / "python"
    install = (uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python)
    run(*install, *requirements, cwd=folder.parent)
    return folder / "bin"


@pytest.fixture
def project_databases(app_db_server: TestServer) -> Iterator[tuple[URL, URL]]:
    """Two empty databases of this test's own: one for the trial, one to build from nothing."""
    first = run_in_thread(app_db_server.create_database("downstream_"))
    second = run_in_thread(app_db_server.create_database("downstream_"))
    try:
        yield first, second
    finally:
        for url in (first, second):
            run_in_thread(app_db_server.drop_database(url))


def environment(**values: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "POSTGRES_"))}
    kept.pop("TEST_DATABASE_URL", None)
    kept.pop("VIRTUAL_ENV", None)
    return kept | values


def plain(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_an_app_on_the_installed_wheel(
    wheel: Path,
    tmp_path: Path,
    project_databases: tuple[URL, URL],
    app_db_server: TestServer,
) -> None:
    database, fresh = project_databases
    bin_dir = make_venv(
        tmp_path / "venv", f"app-db[fastapi,testing] @ {wheel.as_uri()}", "httpx", "uvicorn"
    )
    project = tmp_path / "shop-project"
    (project / "shop").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    for path, text in TUTORIAL.items():
        (project / path).write_text(text)
    env = environment(DATABASE_URL=plain(database))
    test_env = environment(TEST_DATABASE_URL=plain(app_db_server.admin_url))
    steps = tutorial.commands()
    install = ["pip", "install", "'app-db[fastapi,testing]'", "httpx", "uvicorn"]
    assert steps[0] == install  # done above, from the wheel
    outputs = run_the_page(steps[1:], bin_dir, project, env, test_env)
    assert "wrote alembic.ini" in outputs["app-db migrations init --models shop.models"]
    assert (project / "migrations" / "env.py").is_file()
    assert "1 passed" in outputs["pytest"]
    assert "(at head)" in outputs["app-db check"]
    assert "nothing to do" in outputs["app-db migrate"]  # the deploy step, once at head
    assert outputs["uvicorn shop.api:app"] == "201"

    (revision,) = (project / "migrations" / "versions").glob("*_orders.py")
    text = revision.read_text()
    assert "op.create_table('orders'" in text or 'op.create_table("orders"' in text
    assert "branch_labels: str | Sequence[str] | None = ('shop',)" in text
    assert "depends_on: str | Sequence[str] | None = 'app_db_0001'" in text
    assert "drop_table" not in text.split("def downgrade")[0]  # app_db's tables stay
    site_versions = next((tmp_path / "venv").glob("lib/python*/site-packages/app_db/_alembic"))
    assert [p.name for p in (site_versions / "versions").glob("*.py")] == ["0001_initial_schema.py"]
    assert "No new upgrade operations detected" in outputs["alembic check"]

    app_db, alembic = bin_dir / "app-db", bin_dir / "alembic"
    fresh_env = environment(DATABASE_URL=plain(fresh))
    run(alembic, "upgrade", "heads", cwd=project, env=fresh_env)
    out = run(alembic, "check", cwd=project, env=fresh_env)
    assert "No new upgrade operations detected" in out
    run(alembic, "downgrade", "shop@base", cwd=project, env=fresh_env)
    out = run(app_db, "check", cwd=project, env=fresh_env, expect=1)
    assert "behind head" in out
    out = run(alembic, "current", cwd=project, env=fresh_env)
    assert "app_db_0001" in out

    run_tests_both_ways(project, bin_dir, test_env)


def run_the_page(
    steps: list[list[str]],
    bin_dir: Path,
    project: Path,
    env: dict[str, str],
    test_env: dict[str, str],
) -> dict[str, str]:
    """Run the page's commands in order, as a reader would; return each one's output."""
    outputs: dict[str, str] = {}
    user_id = ""
    for words in steps:
        command = " ".join(words)
        if words[0] == "uvicorn":
            outputs[command] = serve_and_order(bin_dir, words, project, env, user_id)
            continue
        if words[0] == "printf":  # printf '<password>\n' | app-db createuser --email ...
            bar = words.index("|")
            password = " ".join(words[1:bar]).strip("'").replace("\\n", "\n")
            user_id = run(
                bin_dir / words[bar + 1], *words[bar + 2 :], cwd=project, env=env, stdin=password
            ).strip()
            outputs[command] = user_id
            continue
        assert words[0] in ("app-db", "alembic", "pytest"), command
        extra = ["-q", "-p", "no:cacheprovider"] if words[0] == "pytest" else []
        outputs[command] = run(
            bin_dir / words[0],
            *words[1:],
            *extra,
            cwd=project,
            env=test_env if words[0] == "pytest" else env,
        )
    return outputs


def serve_and_order(
    bin_dir: Path, words: list[str], project: Path, env: dict[str, str], user: str
) -> str:
    """Serve the tutorial's app as the page says (on a free port); the user that
    ``app-db createuser`` made places an order through it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(bin_dir / words[0]), *words[1:], "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        uuid.UUID(user)  # what createuser printed
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(
                        f"http://127.0.0.1:{port}/orders?user_id={user}&item=pen", method="POST"
                    ),
                    timeout=5,
                ) as response:
                    return str(response.status)
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        server.terminate()
        server.communicate(timeout=10)


def first_block_of_the_testing_page() -> str:
    """The first Python block of the "test your app" page: a wheel user's first test."""
    page = (ROOT / "docs" / "how-to" / "testing.md").read_text()
    start = page.index("```python") + len("```python")
    start = page.index("\n", start) + 1
    return page[start : page.index("```", start)]


def run_tests_both_ways(project: Path, bin_dir: Path, test_env: dict[str, str]) -> None:
    """After the tutorial's own run (FastAPI's way): a trio misconfiguration, and pytest-asyncio."""
    pytest_ = (bin_dir / "pytest", "-q", "-p", "no:cacheprovider")
    (project / "from_the_testing_page").mkdir()
    (project / "from_the_testing_page" / "test_signup.py").write_text(
        first_block_of_the_testing_page()
    )
    out = run(*pytest_, "from_the_testing_page", cwd=project, env=test_env)  # as written
    assert "1 passed" in out
    (project / "misconfigured").mkdir()
    (project / "misconfigured" / "test_trio.py").write_text(TEST_TRIO)
    out = run(*pytest_, "misconfigured", cwd=project, env=test_env, expect=1)
    assert "anyio_backend is 'trio': make your anyio_backend fixture return 'asyncio'" in out
    assert "ScopeMismatch" not in out

    run(
        _uv(),
        "pip",
        "install",
        "--quiet",
        "--python",
        bin_dir / "python",
        "pytest-asyncio",
        cwd=project,
    )
    out = run(*pytest_, "tests", cwd=project, env=test_env)  # the tutorial's pytest.ini
    assert "1 passed" in out
    (project / "pytest.ini").write_text(PYTEST_ASYNCIO_INI)
    (project / "tests" / "test_orders.py").write_text(TEST_ORDERS)
    out = run(*pytest_, "tests", cwd=project, env=test_env)  # and pytest-asyncio's auto mode
    assert "2 passed" in out


def test_pytest_still_runs_where_app_db_is_installed_without_pytest_asyncio(
    wheel: Path, tmp_path: Path, app_db_server: TestServer
) -> None:
    bin_dir = make_venv(tmp_path / "venv", wheel.as_uri(), "pytest")
    run(bin_dir / "python", "-c", "import pytest_asyncio", cwd=tmp_path, expect=1)
    (tmp_path / "test_unrelated.py").write_text(TEST_UNRELATED)
    (tmp_path / "test_needs_db.py").write_text(TEST_NEEDS_DB)

    out = run(
        bin_dir / "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=tmp_path,
        env=environment(TEST_DATABASE_URL=plain(app_db_server.admin_url)),
        expect=1,
    )

    assert "1 passed, 2 errors" in out
    advice = "app_db's async fixtures need a test runner: mark the test @pytest.mark.anyio"
    errors = out[out.index("= ERRORS =") : out.index("short test summary")]
    assert errors.count(advice) == 2  # every such test, not only the first
    assert "AssertionError" not in out

    out = run(
        bin_dir / "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=tmp_path,
        env=environment(),
        expect=1,
    )
    errors = out[out.index("= ERRORS =") : out.index("short test summary")]
    missing = "app_db's test fixtures need PostgreSQL and found none."
    assert errors.count(missing) == 2  # once for each test that needs it, and no more
    assert "During handling of the above exception" not in out
    assert "Traceback" not in out

    out = run(bin_dir / "app-db", "dev", cwd=tmp_path, env=environment(), expect=1)
    assert out.startswith("app-db: app-db dev needs app-db[dev] (missing: fastapi")
    assert len(out.strip().splitlines()) == 1
