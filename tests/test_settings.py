"""Settings: variable names, URL normalisation, secrets kept secret, clear errors."""

import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app_db.errors import ConfigurationError
from app_db.settings import Settings, load_settings

PASSWORD = "s3cr3t-Pa55word"

pytestmark = pytest.mark.usefixtures("clean_env")


def load(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def test_parts_build_an_asyncpg_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db.internal")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_USER", "app")
    monkeypatch.setenv("POSTGRES_PASSWORD", PASSWORD)
    monkeypatch.setenv("POSTGRES_DB", "appdb")

    url = load().sqlalchemy_url()

    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.username, url.database) == ("db.internal", 6543, "app", "appdb")
    assert url.password == PASSWORD


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_database_url_schemes_are_normalised(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://app:{PASSWORD}@db:5432/appdb")

    url = load().sqlalchemy_url()

    assert url.drivername == "postgresql+asyncpg"
    assert url.render_as_string(hide_password=False) == (
        f"postgresql+asyncpg://app:{PASSWORD}@db:5432/appdb"
    )


def test_database_url_wins_over_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@from-url/appdb")
    monkeypatch.setenv("POSTGRES_HOST", "from-parts")
    monkeypatch.setenv("POSTGRES_USER", "app")
    monkeypatch.setenv("POSTGRES_DB", "appdb")

    assert load().sqlalchemy_url().host == "from-url"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"mysql://app:{PASSWORD}@db/appdb", "DATABASE_URL must start with postgres://"),
        (f"postgresql+psycopg://app:{PASSWORD}@db/appdb", "app_db uses asyncpg"),
        (f"not a url {PASSWORD}", "DATABASE_URL is not a valid URL"),
        (f"postgresql://app:{PASSWORD}@db:notaport/appdb", "DATABASE_URL is not a valid URL"),
    ],
)
def test_bad_database_url_is_named_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    with pytest.raises(ConfigurationError) as caught:
        load()

    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_missing_configuration_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load()

    message = str(caught.value)
    assert "set DATABASE_URL, or POSTGRES_HOST, POSTGRES_USER and POSTGRES_DB" in message
    assert "missing: POSTGRES_HOST, POSTGRES_USER, POSTGRES_DB" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_POOL_SIZE", "ten"),
        ("POSTGRES_PORT", "70000"),
        ("DATABASE_SSLMODE", "sometimes"),
        ("DATABASE_POOL_TIMEOUT", "-1"),
    ],
)
def test_bad_value_names_its_variable_never_the_password(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{PASSWORD}@db/appdb")
    monkeypatch.setenv("POSTGRES_PASSWORD", PASSWORD)
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError) as caught:
        load()

    assert name in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_pydantic_errors_hide_their_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://app:{PASSWORD}@db/appdb")

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)

    assert PASSWORD not in str(caught.value)


def test_password_never_shows_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{PASSWORD}@db/appdb")
    monkeypatch.setenv("POSTGRES_PASSWORD", PASSWORD)

    settings = load()
    url = settings.sqlalchemy_url()

    for shown in (repr(settings), str(settings), repr(url), str(url), settings.model_dump_json()):
        assert PASSWORD not in shown


def test_server_settings_reach_connect_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/appdb")
    monkeypatch.setenv("DATABASE_APPLICATION_NAME", "billing")
    monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT_MS", "1500")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "2.5")

    args = load().connect_args()

    assert args["server_settings"] == {"application_name": "billing", "statement_timeout": "1500"}
    assert args["timeout"] == 2.5
    assert "ssl" not in args


def test_zero_statement_timeout_leaves_the_server_default() -> None:
    args = load(database_url="postgresql://app@db/appdb", database_statement_timeout_ms=0)

    assert "statement_timeout" not in args.connect_args()["server_settings"]


def test_sslmode_from_url_moves_to_connect_args() -> None:
    settings = load(database_url="postgresql://app@db/appdb?sslmode=require")

    assert settings.connect_args()["ssl"] == "require"
    assert "sslmode" not in settings.sqlalchemy_url().query


def test_sslmode_variable_wins_over_url() -> None:
    settings = load(
        database_url="postgresql://app@db/appdb?sslmode=require", database_sslmode="disable"
    )

    assert settings.connect_args()["ssl"] == "disable"


def test_verify_full_with_a_ca_file_builds_a_checking_context() -> None:
    ca_file = Path(ssl.get_default_verify_paths().openssl_cafile)
    if not ca_file.is_file():
        pytest.skip("this machine has no system CA bundle to stand in for a CA file")

    full = load(
        database_url="postgresql://app@db/appdb",
        database_sslmode="verify-full",
        database_sslrootcert=ca_file,
    ).connect_args()["ssl"]
    ca_only = load(
        database_url=f"postgresql://app@db/appdb?sslmode=verify-ca&sslrootcert={ca_file}",
    ).connect_args()["ssl"]

    assert isinstance(full, ssl.SSLContext)
    assert full.verify_mode == ssl.CERT_REQUIRED
    assert full.check_hostname
    assert isinstance(ca_only, ssl.SSLContext)
    assert not ca_only.check_hostname


def test_bad_sslmode_in_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="sslmode must be one of"):
        load(database_url="postgresql://app@db/appdb?sslmode=sometimes")


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".env").write_text(
        "POSTGRES_HOST=from-dotenv\nPOSTGRES_USER=app\nPOSTGRES_DB=appdb\nDATABASE_POOL_SIZE=3\n"
    )
    monkeypatch.setenv("DATABASE_POOL_SIZE", "7")

    settings = load_settings()

    assert settings.sqlalchemy_url().host == "from-dotenv"
    assert settings.database_pool_size == 7
