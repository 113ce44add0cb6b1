"""Validate input at the edge, turning Pydantic errors into ``InvalidInputError``."""

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from app_db.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def validated(schema: type[M], data: M | Mapping[str, Any], *, position: int | None = None) -> M:
    """Return ``data`` as a validated ``schema``, an instance of it validated again.

    An instance may have skipped validation (``model_construct``) or been changed since: its
    fields are validated like a mapping's. Only the fields it was given count as set.
    """
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
