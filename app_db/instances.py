"""Rows as ORM instances, built without validation and without the ORM's loading machinery.

A row that app_db read from its own schema becomes a persistent, detached instance of its
model: the row's values are its ``__dict__``, nothing is validated again, and reading it costs
what reading any attribute does. Its SQLAlchemy ``InstanceState`` (about half the cost of an
instance, and a weak reference that calls back when the instance dies) is made only when
something asks for it: ``db.add(instance)``, ``inspect(instance)``, setting an attribute, or
anything else that reads ``instance._sa_instance_state``. A page that is only read and
serialized never makes one. Until then the instance carries ``LAZY_STATE`` in its
``__dict__``; as an instance can only change through its state, one without a state is as
it was loaded.
"""

from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import class_mapper
from sqlalchemy.orm.instrumentation import ClassManager
from sqlalchemy.orm.state import InstanceState
from sqlmodel import SQLModel

M = TypeVar("M", bound=SQLModel)
STATE = "_sa_instance_state"
"""Where SQLAlchemy keeps an instance's state."""
LAZY_STATE = "_app_db_lazy_state"
"""The ``__dict__`` key of an instance built here whose state is not made yet."""


class _StateOnFirstUse:
    """The model's ``_sa_instance_state`` for the instances built here: made when first read.

    It is a class attribute that the instance's own ``__dict__`` entry hides once made; for
    any other instance without a state (one being constructed) it is absent, as before.
    """

    __slots__ = ("_manager", "_primary_key")

    def __init__(self, manager: ClassManager[Any], primary_key: tuple[str, ...]) -> None:
        self._manager = manager
        self._primary_key = primary_key

    def __get__(self, instance: object, owner: type) -> InstanceState[Any]:
        values = None if instance is None else instance.__dict__
        if values is None or LAZY_STATE not in values:
            raise AttributeError(STATE)
        state = InstanceState(instance, self._manager)
        state.key = (type(instance), tuple([values[name] for name in self._primary_key]), None)
        values[STATE] = state
        del values[LAZY_STATE]
        return state


def detached(model: type[M], values: dict[str, Any]) -> M:
    """Return a persistent, detached instance for exactly the model's column values.

    It takes ``values`` as its ``__dict__`` (the caller hands the dict over), without
    validation; ``db.add(instance)`` joins it to a session, where changes flush as UPDATEs.
    """
    return _detached(model, _fields(model), values)


def detached_all(model: type[M], rows: Iterable[dict[str, Any]]) -> list[M]:
    """Return a ``detached`` instance for each dict of values (each handed over)."""
    names = _fields(model)
    return [_detached(model, names, values) for values in rows]


def _detached(model: type[M], names: frozenset[str], values: dict[str, Any]) -> M:
    instance: M = _new(model)
    values[LAZY_STATE] = True
    _set(instance, "__dict__", values)
    _set_fields_set(instance, set(names))
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


_new = object.__new__
_set = object.__setattr__
# Pydantic's slots, set through their descriptors: a page of 50 instances costs 5 µs less.
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


@cache
def _fields(model: type[SQLModel]) -> frozenset[str]:
    """Return the model's column names; first give the model its state on first use."""
    if STATE not in model.__dict__:
        manager = class_mapper(model).class_manager  # configures the mappers on first use
        type.__setattr__(model, STATE, _StateOnFirstUse(manager, primary_key_of(model)))
    return frozenset(column_names(model))


@cache
def column_names(model: type[SQLModel]) -> tuple[str, ...]:
    """Return the model's column names, in table order."""
    return tuple(str(column.key) for column in class_mapper(model, configure=False).columns)


@cache
def primary_key_of(model: type[SQLModel]) -> tuple[str, ...]:
    """Return the names of the model's primary key columns."""
    return tuple(str(column.key) for column in class_mapper(model).primary_key)
