"""The declarative base: one registry whose metadata names every constraint and index."""

from pydantic import ConfigDict
from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

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
