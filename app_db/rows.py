"""Read-only rows for pages: the driver's records, their columns read as attributes.

A page that is only read and served needs no ORM instance per row. ``record_class(model,
names)`` is an ``asyncpg.Record`` subclass that asyncpg builds each row of a statement as,
in C, at no cost over its own records: each of the statement's columns (``names``) reads as
a read-only attribute (a property over the record's own lookup), and the record still reads
by key. Where the statement goes through SQLAlchemy instead (behind PgBouncer), ``fastpath``
builds each row as the record class's twin (``mapped_class``), a tuple with the same reads.

Read schemas built on ``app_db.models.base.StoredRead`` take the values of such a row as
they are, without validating them again, when every field of the schema is a column of
``model``: the rows come from app_db's own statements on the model's table. Pydantic
serializes a row as a dict of the model's columns it holds, so a ``Page`` of rows dumps to
JSON.
"""

from collections.abc import Iterable, Iterator
from functools import cache
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import asyncpg
from pydantic_core import SchemaSerializer, core_schema
from sqlmodel import SQLModel

from app_db.instances import column_names

STORED_MODEL = "__app_db_stored_model__"
"""The class attribute of a row class that names the model whose table its rows come from."""
_MAPPED = "__app_db_mapped__"


@runtime_checkable
class Row(Protocol):
    """A row read by key: an asyncpg ``Record``, a SQLAlchemy ``RowMapping``, or a page's row."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Iterable[Any]: ...

    def values(self) -> Iterable[Any]: ...

    def items(self) -> Iterable[tuple[Any, Any]]: ...


def _serializer(columns: tuple[str, ...]) -> SchemaSerializer:
    """Return pydantic's serializer of a row: a dict of the model's columns it holds."""

    def as_dict(row: Any) -> dict[str, Any]:
        return {name: row[name] for name in columns}

    schema = core_schema.any_schema(
        serialization=core_schema.plain_serializer_function_ser_schema(as_dict)
    )
    return SchemaSerializer(schema)


@cache
def record_class(model: type[SQLModel], names: tuple[str, ...]) -> type[asyncpg.Record]:
    """Return the record class for rows of ``model``'s table with the columns ``names``.

    Each name reads as a read-only attribute; a name that a record's or its twin's method
    has, or a private one, is refused (``ValueError``).
    """
    taken = [
        name
        for name in names
        if hasattr(asyncpg.Record, name) or hasattr(_MappedRow, name) or name.startswith("_")
    ]
    if taken:
        raise ValueError(f"columns that cannot be attributes of a row: {taken}")
    columns = set(column_names(model))
    serializer = _serializer(tuple(name for name in names if name in columns))
    attributes: dict[str, Any] = {name: property(itemgetter(name)) for name in names}
    record: type[asyncpg.Record] = _row_class(model, asyncpg.Record, attributes, serializer)
    mapped: dict[str, Any] = {name: property(itemgetter(index)) for index, name in enumerate(names)}
    mapped |= {"_names": names, "_index": {name: i for i, name in enumerate(names)}}
    setattr(record, _MAPPED, _row_class(model, _MappedRow, mapped, serializer))
    return record


def _row_class(
    model: type[SQLModel], base: type, attributes: dict[str, Any], serializer: SchemaSerializer
) -> Any:
    attributes |= {
        STORED_MODEL: model,
        "__slots__": (),
        "__module__": __name__,
        "__doc__": f"A row of {model.__name__}'s table: read-only, its columns as attributes.",
        "__pydantic_serializer__": serializer,
    }
    return type(f"{model.__name__}Row", (base,), attributes)


def mapped_class(record: type[asyncpg.Record]) -> type["_MappedRow"] | None:
    """Return the twin of a ``record_class`` for rows read through SQLAlchemy (None for a
    record class built elsewhere)."""
    mapped: type[_MappedRow] | None = getattr(record, _MAPPED, None)
    return mapped


def stored_model(row: object) -> type[SQLModel] | None:
    """Return the model whose table this row was read from (a row of a ``record_class`` or
    of its twin), else None."""
    model: type[SQLModel] | None = getattr(type(row), STORED_MODEL, None)
    return model


class _MappedRow(tuple[Any, ...]):
    """A row read through SQLAlchemy, read as its ``record_class``'s records are: a tuple of
    the values, read by attribute, by key, or by position."""

    __slots__ = ()
    _names: tuple[str, ...]
    _index: dict[str, int]

    @classmethod
    def of(cls, values: Row) -> "_MappedRow":
        """Return the row of a mapping that holds (at least) the class's columns."""
        return cls([values[name] for name in cls._names])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, key: str, default: Any = None, /) -> Any:
        index = self._index.get(key)
        return default if index is None else tuple.__getitem__(self, index)

    def keys(self) -> Iterator[str]:
        return iter(self._names)

    def values(self) -> Iterator[Any]:
        return tuple.__iter__(self)

    def items(self) -> Iterator[tuple[str, Any]]:
        return zip(self._names, tuple.__iter__(self), strict=True)

    def __repr__(self) -> str:
        fields = " ".join(f"{name}={value!r}" for name, value in self.items())
        return f"<{type(self).__name__} {fields}>"
