"""Password hashing with argon2id, off the event loop.

The parameters are argon2-cffi's defaults, RFC 9106's low-memory profile (t=3, m=64 MiB,
p=4), above OWASP's minimum for argon2id (t=2, m=19 MiB, p=1). Hashing runs in a worker
thread: argon2 releases the GIL, so a login never stalls the other requests.
"""

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()


async def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password``."""
    return await asyncio.to_thread(_hash, _utf8(password))


async def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches ``password_hash``; a malformed hash never matches."""
    return await asyncio.to_thread(_verify, password_hash, password)


async def burn_verification(password: str) -> None:
    """Spend one verification's time, so unknown accounts answer as slowly as known ones."""
    await verify_password(await _dummy_hash(), password)


def needs_rehash(password_hash: str) -> bool:
    """Return whether the hash was made with other parameters than ``HASHER``'s."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _utf8(password: str) -> bytes:
    """Encode any ``str``, lone surrogates included, so no input can crash the hasher."""
    return password.encode("utf-8", "surrogatepass")


def _hash(password: bytes) -> str:
    return HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, _utf8(password))
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash_sync() -> str:
    return HASHER.hash("app_db: no such account")


async def _dummy_hash() -> str:
    return await asyncio.to_thread(_dummy_hash_sync)
