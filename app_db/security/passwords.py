"""Password hashing with argon2id, off the event loop, a bounded number at a time.

The parameters are argon2-cffi's defaults, RFC 9106's low-memory profile (t=3, m=64 MiB,
p=4), above OWASP's minimum for argon2id (t=2, m=19 MiB, p=1). Hashing runs in worker
threads (argon2 releases the GIL, so a login never stalls the other requests), at most
``PASSWORD_HASH_CONCURRENCY`` at once: each one holds 64 MiB, so the bound is sized for
memory, not cores. It has threads of its own (AnyIO's), apart from the loop's default
executor that ``asyncio.to_thread`` and other blocking work share.
"""

import asyncio
import weakref
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app_db.settings import load_password_settings

HASHER = PasswordHasher()
T = TypeVar("T")

_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter]"
_limiters = weakref.WeakKeyDictionary()


def hashing_limiter() -> CapacityLimiter:
    """Return the running loop's bound on concurrent hashes (``PASSWORD_HASH_CONCURRENCY``)."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(_concurrency())
    return limiter


@cache
def _concurrency() -> int:
    return load_password_settings().hash_concurrency


async def _in_worker(function: Callable[..., T], *args: object) -> T:
    return await to_thread.run_sync(function, *args, limiter=hashing_limiter())


async def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password``."""
    return await _in_worker(_hash, _utf8(password))


async def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches ``password_hash``; a malformed hash never matches."""
    return await _in_worker(_verify, password_hash, password)


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
    return await _in_worker(_dummy_hash_sync)
