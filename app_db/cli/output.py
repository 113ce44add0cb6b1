"""What the ``app-db`` command prints: one line per fact, one line per failure, no password."""

import sys

from sqlalchemy.engine import URL

from app_db.settings import Settings


def say(line: str) -> None:
    """Print a line on stdout at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fail(line: str, code: int = 1) -> int:
    """Print one line on stderr and return the exit code."""
    sys.stderr.write(f"app-db: {line}\n")
    return code


def masked(settings: Settings) -> str:
    """Return the database URL with its password hidden."""
    return settings.sqlalchemy_url().render_as_string(hide_password=True)


def scrub(message: str, url: URL) -> str:
    """Remove the password from a driver's message, should it ever quote it."""
    return message.replace(str(url.password), "***") if url.password else message


def innermost(error: BaseException) -> BaseException:
    """Return the innermost driver or system error behind ``error``."""
    seen: set[int] = set()
    inner = error
    while id(inner) not in seen:
        seen.add(id(inner))
        nested = getattr(inner, "orig", None) or inner.__cause__
        if not isinstance(nested, BaseException):
            break
        inner = nested
    return getattr(inner, "driver_exception", None) or inner


def reason(error: BaseException) -> str:
    """Return the first line of the innermost driver or system error behind ``error``."""
    inner = innermost(error)
    text = str(inner).strip().splitlines()
    return text[0] if text and text[0] else type(inner).__name__
