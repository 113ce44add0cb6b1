"""Have I Been Pwned's range API: whether a password appeared in a known breach.

Only the first five hex digits of the password's SHA-1 leave the process (k-anonymity); the
service answers with every suffix under that prefix, padded, and the match is made here. Turn
it on with ``PASSWORD_BREACH_CHECK=app_db.security.breach:pwned_passwords``; ``PASSWORD_PWNED_URL``
points it at a mirror.
"""

import hashlib
import urllib.request
from functools import cache

from anyio import to_thread

from app_db.settings import PasswordSettings, load_password_settings

USER_AGENT = "app_db breach check"


@cache
def _settings() -> PasswordSettings:
    return load_password_settings()


async def pwned_passwords(password: str) -> bool:
    """Return whether Have I Been Pwned counts the password in a breach."""
    settings = _settings()
    digest = hashlib.sha1(password.encode("utf-8", "surrogatepass")).hexdigest().upper()  # noqa: S324 - the API's key
    prefix, suffix = digest[:5], digest[5:]
    body = await to_thread.run_sync(
        _fetch, settings.pwned_url + prefix, settings.breach_timeout, abandon_on_cancel=True
    )
    return suffix in _counted(body)


def _counted(body: str) -> set[str]:
    """Return the suffixes of the answer with a count above 0 (padding lines count 0)."""
    found = set()
    for line in body.splitlines():
        suffix, _, count = line.strip().partition(":")
        if count.strip().isdigit() and int(count) > 0:
            found.add(suffix.upper())
    return found


def _fetch(url: str, timeout: float) -> str:
    if not url.startswith(("https://", "http://")):
        raise ValueError("PASSWORD_PWNED_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, headers={"Add-Padding": "true", "User-Agent": USER_AGENT}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode("ascii", "replace")
