"""compose.yaml and .env.example: both parse, and they agree on names and defaults."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from app_db.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = re.compile(r"^\$\{(?P<name>[A-Z_]+):-(?P<default>[^}]*)\}$")
PORT = re.compile(r"^127\.0\.0\.1:\$\{POSTGRES_PORT:-(?P<default>\d+)\}:5432$")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert list(services) == ["db"]
    db: dict[str, Any] = services["db"]
    return db


@pytest.fixture(scope="module")
def example() -> dict[str, str | None]:
    return dotenv_values(ROOT / ".env.example")


def compose_defaults(service: dict[str, Any]) -> dict[str, str]:
    defaults = {}
    for key, value in service["environment"].items():
        match = DEFAULT.match(value)
        assert match, f"{key} must be written as ${{{key}:-default}}"
        assert match["name"] == key
        defaults[key] = match["default"]
    port = PORT.match(service["ports"][0])
    assert port, "the port must be bound to 127.0.0.1 with a POSTGRES_PORT default"
    defaults["POSTGRES_PORT"] = port["default"]
    return defaults


def test_image_pins_a_postgres_major(service: dict[str, Any]) -> None:
    assert re.fullmatch(r"postgres:1[5-9](\.\d+)?(-[a-z0-9]+)?", service["image"])


def test_healthcheck_uses_pg_isready_and_data_lives_in_a_named_volume(
    service: dict[str, Any],
) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())

    assert "pg_isready" in " ".join(service["healthcheck"]["test"])
    volume, _, target = service["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert target == "/var/lib/postgresql/data"


def test_compose_defaults_match_env_example(
    service: dict[str, Any], example: dict[str, str | None]
) -> None:
    defaults = compose_defaults(service)

    assert {k: example.get(k) for k in defaults} == defaults
    assert set(example) == {*defaults, "POSTGRES_HOST"}


@pytest.mark.usefixtures("clean_env")
def test_env_example_configures_the_settings(example: dict[str, str | None]) -> None:
    settings = load_settings(_env_file=ROOT / ".env.example")
    url = settings.sqlalchemy_url()

    assert url.host == example["POSTGRES_HOST"] == "localhost"
    assert url.port == int(example["POSTGRES_PORT"] or 0)
    assert url.database == example["POSTGRES_DB"]


def test_defaults_are_visibly_not_secret(example: dict[str, str | None]) -> None:
    assert "not-secret" in (example["POSTGRES_PASSWORD"] or "")


def test_dotenv_is_git_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()

    assert ".env" in ignored
