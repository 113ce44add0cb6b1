"""The declarative base: one registry whose metadata names every constraint and index."""

from functools import cache
from typing import Any, Self, cast

from pydantic import ConfigDict, PrivateAttr, model_validator
from sqlalchemy import MetaData
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import registry
from sqlalchemy.orm.state import InstanceState
from sqlmodel import SQLModel

from app_db.instances import LAZY_STATE, column_names
from app_db.rows import stored_model

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(column_0_label)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AppModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of app_db's schemas and tables, and of an app's own tables beside them.

    Subclass it, not ``SQLModel``, for a table that references ``users.id``, ``sessions.id``
    or ``customers.id``: the table joins ``app_db.models.metadata`` (and so the migrations
    that ``app-db migrations init`` sets up), and its constraints are named by
    ``NAMING_CONVENTION``. ``id_field``, ``created_at_field`` and ``updated_at_field`` give
    the columns app_db's own tables share. SQLModel's default metadata is left alone.

    Validation errors never repeat the input (``hide_input_in_errors``): a password or a token
    put in the wrong field must not reach a log through the error.
    """

    model_config = ConfigDict(hide_input_in_errors=True)  # type: ignore[assignment]


class CheckedInput(AppModel):
    """An input schema that knows whether it was validated.

    ``model_construct`` skips validation, and leaves ``checked`` false; an assignment is
    validated (``validate_assignment``). So app_db takes a checked instance as it is, and
    validates any other like a mapping: no input reaches the database unvalidated, and none
    is validated twice.
    """

    model_config = ConfigDict(validate_assignment=True)
    _checked: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _remember(self) -> Self:
        self._checked = True
        return self

    @property
    def checked(self) -> bool:
        """Return whether pydantic validated this instance (not so after ``model_construct``)."""
        return self._checked


class StoredRead(AppModel):
    """A read schema that takes a row loaded from the database as it is.

    ``model_validate`` of a table instance that the database returned (persistent or
    detached, unchanged since, every field loaded) copies its values without validating
    them: app_db validated them on the way in, and the database's types hold them; so does a
    row that app_db read from a model's table for a page (``app_db.rows``), provided every
    field of the schema is a column of that table. Anything else (a mapping, a new or
    changed instance, a row of another table) is validated as usual. Building 50 read
    models for a page then costs about what building the instances did.
    """

    @classmethod
    def model_validate(  # type: ignore[override]  # SQLModel's signature, as SQLModel does
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: dict[str, Any] | None = None,
        update: dict[str, Any] | None = None,
    ) -> Self:
        if strict is None and context is None and update is None:
            values = _stored_values(obj, cls)
            if values is not None:
                built = _new(cls)
                _set(built, "__dict__", values)
                _set(built, "__pydantic_fields_set__", set(values))
                _set(built, "__pydantic_extra__", None)
                _set(built, "__pydantic_private__", None)
                return built
        return super().model_validate(
            obj, strict=strict, from_attributes=from_attributes, context=context, update=update
        )


def _stored_values(obj: object, schema: type[AppModel]) -> dict[str, Any] | None:
    """Return the field values of an unchanged instance loaded from the database, or of a row
    that app_db read from its table (``app_db.rows``), else None."""
    model = stored_model(obj)
    if model is not None:
        return _columns_of(obj, schema, model)
    loaded = getattr(obj, "__dict__", None)
    if loaded is None or LAZY_STATE not in loaded:  # else loaded by app_db, and untouched
        state = getattr(obj, "_sa_instance_state", None)
        if not isinstance(state, InstanceState) or state.key is None or state.modified:
            return None
        loaded = state.dict
    return _columns_of(loaded, schema, cast("type[SQLModel]", type(obj)))


def _columns_of(
    values: Any, schema: type[AppModel], model: type[SQLModel]
) -> dict[str, Any] | None:
    """Return the schema's fields from a row or an instance's values of ``model``'s table,
    if they are all columns of that table and all there; else None."""
    if not _columns_hold(schema, model):
        return None
    try:
        return {name: values[name] for name in schema.__pydantic_fields__}
    except KeyError:  # expired, never loaded or not read: let validation say (and fail if it must)
        return None


@cache
def _columns_hold(schema: type[AppModel], model: type[SQLModel]) -> bool:
    """Whether the model is mapped to a table, and every field of the read schema a column."""
    if sa_inspect(model, raiseerr=False) is None:
        return False
    return set(schema.__pydantic_fields__) <= set(column_names(model))


_new = object.__new__
_set = object.__setattr__
