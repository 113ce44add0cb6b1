"""Shared test helpers; the database fixtures come from the app_db pytest plugin."""

from pathlib import Path

import pytest

from app_db.settings import Settings

DATABASE_VARIABLES = tuple(name.upper() for name in Settings.model_fields)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove every database variable from the environment and run in an empty folder."""
    for name in DATABASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
