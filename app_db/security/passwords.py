"""Password hashing with argon2id, off the event loop, a bounded number at a time.

The parameters are argon2-cffi's defaults, RFC 9106's low-memory profile (t=3, m=64 MiB,
p=4), above OWASP's minimum for argon2id (t=2, m=19 MiB, p=1). Hashing runs in worker
threads (argon2 releases the GIL, so a login never stalls the other requests), at most
``PASSWORD_HASH_CONCURRENCY`` at once: each one holds 64 MiB, so the bound is sized for
memory, not cores. It has threads of its own (AnyIO's), apart from the loop's default
executor that ``asyncio.to_thread`` and other blocking work share.

A verification for a client network (see ``throttle.network_of``) takes at most half of the
slots: guesses from one network queue behind each other, while the other networks' logins
find a slot free.
"""

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
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


class _Shares:
    """A bound per network on the slots in use, for one event loop."""

    def __init__(self, share: int) -> None:
        self.share = share
        self.limiters: dict[str, CapacityLimiter] = {}

    @asynccontextmanager
    async def held(self, network: str) -> AsyncIterator[None]:
        limiter = self.limiters.get(network)
        if limiter is None:
            limiter = self.limiters[network] = CapacityLimiter(self.share)
        try:
            async with limiter:
                yield
        finally:
            if not limiter.borrowed_tokens and not limiter.statistics().tasks_waiting:
                self.limiters.pop(network, None)


_shares: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shares]"
_shares = weakref.WeakKeyDictionary()


def network_share(network: str) -> AbstractAsyncContextManager[None]:
    """Hold one of a network's slots: at most half of ``PASSWORD_HASH_CONCURRENCY`` (at least 1)."""
    loop = asyncio.get_running_loop()
    shares = _shares.get(loop)
    if shares is None:
        shares = _shares[loop] = _Shares(max(1, _concurrency() // 2))
    return shares.held(network)


async def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password``."""
    return await _in_worker(_hash, _utf8(password))


async def verify_password(password_hash: str, password: str, *, network: str | None = None) -> bool:
    """Return whether ``password`` matches ``password_hash``; a malformed hash never matches.

    With a client ``network``, it waits for one of that network's slots first.
    """
    if network is None:
        return await _in_worker(_verify, password_hash, password)
    async with network_share(network):
        return await _in_worker(_verify, password_hash, password)


async def burn_verification(password: str, *, network: str | None = None) -> None:
    """Spend one verification's time, so unknown accounts answer as slowly as known ones."""
    await verify_password(await _dummy_hash(), password, network=network)


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
