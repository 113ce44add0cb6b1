"""Validate input at the edge, turning Pydantic errors into ``InvalidInputError``."""

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from app_db.errors import InvalidInputError
from app_db.models.base import CheckedInput

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def validated(schema: type[M], data: M | Mapping[str, Any], *, position: int | None = None) -> M:
    """Return ``data`` as a validated ``schema``.

    An instance that pydantic validated (a ``CheckedInput``, whose assignments are validated
    too) is taken as it is. Any other instance, one built with ``model_construct`` say, has its
    fields validated like a mapping's; only the fields it was given count as set.
    """
    if isinstance(data, schema) and isinstance(data, CheckedInput) and data.checked:
        return data
    if isinstance(data, BaseModel):
        data = {name: getattr(data, name) for name in data.model_fields_set}
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError.from_validation(exc, position=position) from None


def validated_value(adapter: TypeAdapter[T], value: object, *, field: str) -> T:
    """Return ``value`` validated by ``adapter``, naming ``field`` in the error."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        error = InvalidInputError.from_validation(exc)
        raise InvalidInputError(str(error.details[0]["message"]), field=field) from None


def checked_uuid(value: object, *, field: str) -> uuid.UUID:
    """Return ``value`` as a UUID (a ``UUID``, or its text); refuse anything else, naming
    ``field``, without repeating the value."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) <= _UUID_TEXT_MAX:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInputError("not a UUID", field=field)


def checked_uuid_or_none(value: object, *, field: str) -> uuid.UUID | None:
    """Return ``checked_uuid(value)``, or ``None`` for ``None``."""
    return None if value is None else checked_uuid(value, field=field)


_UUID_TEXT_MAX = 45  # "urn:uuid:" and 36 characters
