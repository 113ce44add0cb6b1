"""Read-only rows for pages: the driver's records, their columns read as attributes.

A page that is only read and served needs no ORM instance per row. ``record_class(model)``
is an ``asyncpg.Record`` subclass that asyncpg builds each row as, in C, at no cost over its
own records; each of the model's columns is a read-only attribute (a property over the
record's own lookup by name), and the record still reads by key. Read schemas built on
``app_db.models.base.StoredRead`` take such a row's values as they are, without validating
them again: only app_db's own statements on the model's table build them.

Where the statement goes through SQLAlchemy instead (behind PgBouncer), ``read_only`` gives
each row as a ``MappedRow``: the same attributes and keys, and the same trust, built in Python.
"""

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import asyncpg
from sqlmodel import SQLModel

from app_db.instances import column_names


@runtime_checkable
class Row(Protocol):
    """What every row of a page reads as, besides its columns' attributes: a read-only mapping
    of column name to value."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...

    def values(self) -> Iterable[Any]: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


STORED_MODEL = "__app_db_stored_model__"
"""The class attribute that names the model a ``record_class`` reads."""


@cache
def record_class(model: type[SQLModel], *extra: str) -> type[asyncpg.Record]:
    """Return the record class for rows of ``model``'s columns, and of ``extra`` ones.

    Every column, and every ``extra`` name, reads as a read-only attribute.
    """
    names = (*column_names(model), *extra)
    taken = [name for name in names if hasattr(asyncpg.Record, name)]
    if taken:
        raise ValueError(f"columns named as a record's methods: {taken}")
    attributes: dict[str, Any] = {name: property(itemgetter(name)) for name in names}
    attributes[STORED_MODEL] = model
    attributes["__slots__"] = ()
    attributes["__module__"] = __name__
    attributes["__doc__"] = f"A row of {model.__name__}'s columns, read-only, read as attributes."
    return type(f"{model.__name__}Row", (asyncpg.Record,), attributes)


def stored_model(row: object) -> type[SQLModel] | None:
    """Return the model whose stored row this is (a ``record_class`` record, a ``MappedRow``
    of ``read_only``), else None."""
    if isinstance(row, MappedRow):
        return row._model
    model: type[SQLModel] | None = getattr(type(row), STORED_MODEL, None)
    return model


class MappedRow:
    """A row of ``model``'s table read through SQLAlchemy, read as a ``record_class`` record is:
    by attribute or by key."""

    __slots__ = ("_model", "_values")

    def __init__(self, values: Mapping[str, Any], model: type[SQLModel]) -> None:
        self._values = values
        self._model = model

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def keys(self) -> Any:
        return self._values.keys()

    def values(self) -> Any:
        return self._values.values()

    def items(self) -> Any:
        return self._values.items()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MappedRow) and dict(self._values) == dict(other._values)

    __hash__ = None  # type: ignore[assignment]  # as a mapping: not hashable

    def __repr__(self) -> str:
        fields = " ".join(f"{name}={value!r}" for name, value in self._values.items())
        return f"<MappedRow {fields}>"


def read_only(rows: Sequence[Any], model: type[SQLModel]) -> list[Any]:
    """Return rows read from ``model``'s table as they are if the driver built them (as a
    ``record_class``), else each as a ``MappedRow``."""
    if not rows or isinstance(rows[0], asyncpg.Record):
        return rows if isinstance(rows, list) else list(rows)
    return [MappedRow(row, model) for row in rows]
