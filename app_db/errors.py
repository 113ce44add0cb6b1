"""Typed errors raised by app_db in place of raw driver or SQLAlchemy exceptions."""


class AppDBError(Exception):
    """Base class of every error app_db raises on purpose."""


class ConfigurationError(AppDBError, ValueError):
    """Raise when the settings are missing or invalid; the message names the variable."""


def violated_constraint(error: BaseException) -> str | None:
    """Return the name of the constraint a database error violated, read from the driver."""
    driver_error = getattr(getattr(error, "orig", None), "driver_exception", None)
    name = getattr(driver_error, "constraint_name", None)
    return name if isinstance(name, str) else None
