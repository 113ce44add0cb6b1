"""The sessions ``create_sessionmaker`` makes: SQLModel's ``AsyncSession``, built when first used.

Building an ``AsyncSession`` costs about 5 µs (12.7 µs on a slower machine), half of an empty
``transaction()`` block: SQLAlchemy's ``Session`` with its identity map and registries, and the
proxy around it. A request whose reads all borrow a pooled connection (``app_db.fastpath``,
``app_db.coalesce``) never needs them. So a ``LazyAsyncSession`` keeps its constructor's
arguments and runs ``AsyncSession.__init__`` with them at the first access to an instance
attribute it lacks: a method that works on the ``Session`` (``add``, ``execute``, ``close``...),
``sync_session``, ``info``, ``bind``, or any name that is not there (``hasattr`` builds it
too). Class attributes answer as the class has them: ``sync_session_class`` is SQLModel's
``Session`` until the session is built with the sessionmaker's. From then on it is that
``AsyncSession``, at no cost per attribute.

The fast path asks what it needs without building: ``built`` (no ``Session`` yet means nothing
added, no transaction, no connection, an empty identity map), ``bind_of`` and ``info_of``. An
argument that ``Session`` refuses raises at the first use rather than at the sessionmaker's
call, and again at every later use.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

_ARGUMENTS = "_app_db_arguments"
"""The instance's ``__dict__`` key of the constructor's arguments, until it is built."""
_NO_INFO: Mapping[Any, Any] = MappingProxyType({})


class LazyAsyncSession(AsyncSession):
    """SQLModel's ``AsyncSession``, whose ``Session`` is built when something first needs it."""

    def __init__(self, bind: AsyncEngine | AsyncConnection | None = None, **kw: Any) -> None:
        self.__dict__[_ARGUMENTS] = (bind, kw)

    def __getattr__(self, name: str) -> Any:
        """Build the session (only attributes it does not have yet come here), then answer."""
        arguments = self.__dict__.pop(_ARGUMENTS, None)
        if arguments is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        bind, kw = arguments
        try:
            super().__init__(bind, **kw)
        except BaseException:
            self.__dict__[_ARGUMENTS] = arguments  # the next use raises the same way
            raise
        return getattr(self, name)


def built(db: AsyncSession) -> Session | None:
    """Return the session's ``Session``, or ``None`` when it is a ``LazyAsyncSession`` not yet
    built: it then holds nothing (no instance, no change, no transaction, no connection)."""
    if _ARGUMENTS in db.__dict__:
        return None
    return db.sync_session


def bind_of(db: AsyncSession) -> AsyncEngine | AsyncConnection | None:
    """Return ``db.bind``, without building the session."""
    arguments = db.__dict__.get(_ARGUMENTS)
    if arguments is None:
        return db.bind
    bind: AsyncEngine | AsyncConnection | None = arguments[0]
    return bind


def info_of(db: AsyncSession) -> Mapping[Any, Any]:
    """Return ``db.info`` to read, without building the session: unbuilt, a read-only view
    of the ``info`` it was made with (the sessionmaker's, merged with the call's)."""
    arguments = db.__dict__.get(_ARGUMENTS)
    if arguments is None:
        return db.info
    info: dict[Any, Any] | None = arguments[1].get("info")
    return _NO_INFO if info is None else MappingProxyType(info)
