"""The password field: a length range, valid Unicode, and not a common or guessable password.

The common passwords are zxcvbn's list of the 30,000 most frequent ones (from leaked password
sets), compared in any letter case, also once trailing digits and symbols are taken off
(``Password2024!`` is ``password`` with a suffix). A password is also refused when it is the
account's email, its local part or its display name, ignoring case and punctuation, with or
without trailing digits. No message repeats the password.
"""

import re
from functools import cache
from typing import Annotated

from pydantic import AfterValidator, SecretStr, StringConstraints

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024
COMMON = "is one of the most common passwords: choose another"
PERSONAL = "must not be the account's email or name: choose another"

_SUFFIX = re.compile(r"[\W\d_]+$")
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


@cache
def common_passwords() -> frozenset[str]:
    """Return zxcvbn's list of frequent passwords, lower-cased (loaded once, about 70 ms)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # noqa: PLC0415 - 800 kB, on first use

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    """Return whether the password, or its stem before trailing digits and symbols, is common."""
    folded = password.strip().lower()
    common = common_passwords()
    if folded in common:
        return True
    stem = _SUFFIX.sub("", folded)
    return len(stem) >= PASSWORD_MIN_LENGTH and stem in common


def is_personal(password: str, email: str | None, display_name: str | None) -> bool:
    """Return whether the password is the account's email, its local part or display name."""
    folded = password.casefold()
    core = _NOT_ALPHANUMERIC.sub("", folded)
    stems = {core, _NOT_ALPHANUMERIC.sub("", _SUFFIX.sub("", folded))}
    personal = set()
    if email:
        if email.casefold() in folded:
            return True
        personal.add(_NOT_ALPHANUMERIC.sub("", email.rpartition("@")[0].casefold()))
    if display_name:
        personal.add(_NOT_ALPHANUMERIC.sub("", display_name.casefold()))
    return bool(stems & (personal - {""}))


def _encodable(password: SecretStr) -> SecretStr:
    try:
        password.get_secret_value().encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return password


def _not_common(password: SecretStr) -> SecretStr:
    if is_common(password.get_secret_value()):
        raise ValueError(COMMON)
    return password


Password = Annotated[
    SecretStr,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_encodable),
    AfterValidator(_not_common),
]
"""A new password: 8 to 1,024 characters of valid Unicode, not a common password."""
