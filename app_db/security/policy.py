"""The checks a new password passes beyond its field type: the account, and known breaches.

The field type (``app_db.models.password.Password``) refuses short, long and common passwords.
Here a password is refused when it is the account's email or name, and when the breach check
of ``PASSWORD_BREACH_CHECK`` says it appeared in a breach. That check is an async function of
the password; when it fails or takes longer than ``PASSWORD_BREACH_TIMEOUT``, the password is
accepted and a WARNING logged on ``app_db.security``: an outage of the breach service must not
stop sign-ups.
"""

import logging
from functools import cache

from anyio import fail_after

from app_db.errors import InvalidInputError
from app_db.models.password import PERSONAL, is_personal
from app_db.settings import PasswordSettings, load_password_settings

BREACHED = "appeared in a data breach: choose another"
logger = logging.getLogger("app_db.security")


@cache
def default_settings() -> PasswordSettings:
    """Return the password settings from the environment, read once."""
    return load_password_settings()


async def check_new_password(
    password: str,
    *,
    email: str | None,
    display_name: str | None,
    settings: PasswordSettings | None = None,
) -> None:
    """Raise ``InvalidInputError`` (field ``password``) for a personal or breached password."""
    if is_personal(password, email, display_name):
        raise InvalidInputError(PERSONAL, field="password")
    policy = settings or default_settings()
    check = policy.breach_check
    if check is None:
        return
    try:
        with fail_after(policy.breach_timeout):
            breached = await check(password)
    except Exception as exc:
        logger.warning("breached-password check failed (%s): password accepted", type(exc).__name__)
        return
    if breached:
        raise InvalidInputError(BREACHED, field="password")
