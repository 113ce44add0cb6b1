"""SSL settings reach asyncpg: verify-full with a locally made CA, on a cluster of our own."""

import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app_db import (
    DatabaseUnavailableError,
    Settings,
    create_engine,
    create_sessionmaker,
    transaction,
)
from app_db.engine import dispose
from tests.pgbouncer import free_port
from tests.ssl_cluster import server_bindir, ssl_cluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
    pytest.mark.skipif(
        server_bindir() is None, reason="needs PostgreSQL server binaries built with SSL"
    ),
]


def openssl(*args: str, cwd: Path) -> None:
    executable = shutil.which("openssl")
    assert executable is not None
    subprocess.run([executable, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> None:
    """A CA that strict verifiers (Python 3.13's default) accept: CA and key-usage extensions."""
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=app_db test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip


def make_server_cert(folder: Path) -> None:
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=folder,
    )
    (folder / "san.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=folder,
    )


async def ssl_in_use(settings: Settings) -> bool:
    engine = create_engine(settings)
    try:
        async with transaction(create_sessionmaker(engine)) as db:
            connection = await db.connection()
            result = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return bool(result)
    finally:
        await dispose(engine)


async def test_sslmodes_reach_asyncpg(tmp_path: Path) -> None:
    make_server_cert(tmp_path)
    port = free_port()
    base = f"postgresql://postgres@localhost:{port}/postgres"
    ca = tmp_path / "ca.crt"

    def settings(url: str, **values: object) -> Settings:
        return Settings(_env_file=None, database_url=SecretStr(url), **values)  # type: ignore[arg-type]

    with ssl_cluster(tmp_path, port):
        full = settings(base, database_sslmode="verify-full", database_sslrootcert=ca)
        assert await ssl_in_use(full)
        assert await ssl_in_use(settings(f"{base}?sslmode=verify-ca&sslrootcert={ca}"))
        assert await ssl_in_use(settings(base, database_sslmode="require"))
        other = tmp_path / "other-ca.crt"
        with pytest.raises(DatabaseUnavailableError):
            await ssl_in_use(
                settings(base, database_sslmode="verify-full", database_sslrootcert=other)
            )
        with pytest.raises(DatabaseUnavailableError) as refused:  # a refused login is typed
            await ssl_in_use(settings(base, database_sslmode="disable"))
        assert isinstance(refused.value.__cause__, DBAPIError)
        assert "no pg_hba.conf entry" in str(refused.value.__cause__)
