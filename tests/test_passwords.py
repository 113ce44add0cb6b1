"""Hashing is bounded by PASSWORD_HASH_CONCURRENCY and leaves the default executor free."""

import asyncio
import threading

import pytest

from app_db.errors import ConfigurationError
from app_db.security import passwords
from app_db.settings import load_password_settings


async def test_at_most_four_hashes_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    running = peak = 0
    lock = threading.Lock()
    real_hash = passwords._hash

    def counted(password: bytes) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real_hash(password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(passwords, "_hash", counted)
    hashes = await asyncio.gather(*(passwords.hash_password(f"pw-{n}") for n in range(12)))

    assert len(set(hashes)) == 12
    assert peak == load_password_settings().hash_concurrency == 4


async def test_a_burst_of_logins_leaves_the_default_executor_free() -> None:
    finished: list[str] = []

    async def hashing(n: int) -> None:
        await passwords.hash_password(f"pw-{n}")
        finished.append("hash")

    async def other_blocking_work() -> None:
        await asyncio.to_thread(lambda: None)
        finished.append("other")

    burst = [asyncio.create_task(hashing(n)) for n in range(12)]
    await asyncio.sleep(0)  # the hashes have taken their threads
    await other_blocking_work()
    await asyncio.gather(*burst)

    assert finished[0] == "other"


def test_the_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSWORD_HASH_CONCURRENCY", "2")
    assert load_password_settings().hash_concurrency == 2
    monkeypatch.setenv("PASSWORD_HASH_CONCURRENCY", "0")
    with pytest.raises(ConfigurationError, match="PASSWORD_HASH_CONCURRENCY"):
        load_password_settings()
