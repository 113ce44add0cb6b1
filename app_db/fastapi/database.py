"""The app's database: an engine for the app's life, and one transaction per request.

``lifespan`` builds the engine from the environment when the app starts and disposes of it
when the app stops; ``use(app, sessionmaker)`` gives the app a sessionmaker of your own
instead (a test's, joined to its rolled-back transaction). ``Db`` is a session in a
transaction that commits when the handler succeeds and rolls back when it raises.
"""

import inspect
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    commit_position,
    create_engine,
    create_sessionmaker,
    fastpath,
    health,
    heap,
    transaction,
)
from app_db.engine import dispose

STATE = "app_db_sessionmaker"


def use(app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Serve the app's requests from this sessionmaker; ``lifespan`` then builds no engine."""
    setattr(app.state, STATE, sessionmaker)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the engine (``DATABASE_URL``, or the ``POSTGRES_*`` parts) for the app's life.

    Give it to ``FastAPI(lifespan=lifespan)``, or enter it from a lifespan of your own
    (``async with lifespan(app): ...``). An app given a sessionmaker by ``use`` keeps it.
    The app serves inside ``app_db.heap.frozen()``: what exists once it has started stays
    out of the cyclic garbage collector's passes until it stops.
    """
    if getattr(app.state, STATE, None) is not None:
        yield
        return
    engine = create_engine()
    use(app, create_sessionmaker(engine))
    try:
        with heap.frozen():
            yield
    finally:
        setattr(app.state, STATE, None)
        await dispose(engine)


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """Return the app's sessionmaker (override this dependency to give another).

    ``CurrentUser`` and ``CurrentLogin`` read it through ``sessionmaker_for``, which calls
    an override of no parameters or of the ``Request`` and refuses any other.

    It is ``async`` though it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a hop to another thread and back on every request.
    """
    sessionmaker: async_sessionmaker[AsyncSession] | None = getattr(request.app.state, STATE, None)
    if sessionmaker is None:
        raise RuntimeError(
            "no database for this app: create it with FastAPI(lifespan=app_db.fastapi.lifespan),"
            " or call app_db.fastapi.use(app, sessionmaker)"
        )
    return sessionmaker


Sessionmaker = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def sessionmaker_for(request: Request) -> async_sessionmaker[AsyncSession]:
    """Return what ``get_sessionmaker`` gives this request, its override included.

    For a dependency that reads the sessionmaker on every request (the logged-in user's):
    FastAPI spends about 10 µs solving each dependency of a request, and this is a call.
    An override of ``get_sessionmaker`` (``app.dependency_overrides``) is called here, and
    awaited when it returns an awaitable, if its parameters are none or the request (typed
    ``Request``). One that yields, or takes anything that FastAPI would have to solve (a
    dependency, a query parameter), raises ``TypeError``: give such an app its sessionmaker
    with ``use``.
    """
    override = getattr(request.app, "dependency_overrides", {}).get(get_sessionmaker)
    if override is None:
        return await get_sessionmaker(request)
    made = override(**dict.fromkeys(_request_parameters(override), request))
    if inspect.isawaitable(made):
        made = await made
    return cast("async_sessionmaker[AsyncSession]", made)


def _request_parameters(override: Any) -> list[str]:
    """Return the names of the override's ``Request`` parameters; refuse any other need."""
    if inspect.isgeneratorfunction(override) or inspect.isasyncgenfunction(override):
        raise TypeError(_UNSUPPORTED % (override, "it yields"))
    names = []
    for name, parameter in inspect.signature(override, eval_str=True).parameters.items():
        kind = parameter.annotation
        if not (isinstance(kind, type) and issubclass(kind, Request)):
            raise TypeError(_UNSUPPORTED % (override, f"its parameter {name!r} needs solving"))
        names.append(name)
    return names


_UNSUPPORTED = (
    "the override of get_sessionmaker %r cannot serve the logged-in user's lookup: %s; "
    "override it with a function of no parameters or of the Request, or give the app its "
    "sessionmaker with app_db.fastapi.use(app, sessionmaker)"
)

_Known = tuple[dict[str, Any], AsyncEngine | None]
_borrowing: "weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], _Known]"
_borrowing = weakref.WeakKeyDictionary()


def borrowing_engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """Return the engine whose pooled connection a new session's first read would borrow.

    That is the sessionmaker's engine, unless its sessions hold a connection (a test's,
    joined to its rolled-back transaction), are scoped or read at another isolation level
    (see ``fastpath.borrowable``): then ``None``. Asked once per sessionmaker and settings.
    """
    known = _borrowing.get(sessionmaker)
    if known is not None and known[0] == sessionmaker.kw:
        return known[1]
    probe = sessionmaker()
    engine = fastpath.borrowable(probe)
    _borrowing[sessionmaker] = (dict(sessionmaker.kw), engine)
    return engine


POSITION_COOKIE = "__Host-app-db-position"
POSITION_HEADER = "app-db-position"
POSITION_STATE = "app_db_position"


async def get_db(request: Request, sessionmaker: Sessionmaker) -> AsyncIterator[AsyncSession]:
    """Yield the request's session: one transaction, committed on success, else rolled back.

    With a read replica, the transaction reads at least what this client wrote before: the
    position its last write left (a cookie, or the ``App-DB-Position`` header for API
    clients), which ``harden``'s ``CarryPosition`` sends back after each write. Without a
    replica none is sent, and this costs nothing.
    """
    after = request.cookies.get(POSITION_COOKIE) or request.headers.get(POSITION_HEADER)
    async with transaction(sessionmaker, after=after) as db:
        yield db
    position = await commit_position(db)
    if position is not None:
        request.scope.setdefault("state", {})[POSITION_STATE] = position


Db = Annotated[AsyncSession, Depends(get_db, scope="function")]
"""The request's session. The commit runs before the response is sent, so a failed commit is
the request's error (a 503, a 409), never a 200 for a write that was lost."""


async def healthz(sessionmaker: Sessionmaker) -> JSONResponse:
    """Answer 200 when the database runs ``SELECT 1`` in time, else 503; with pool figures.

    Mount it with ``app.add_api_route("/healthz", healthz)`` for a load balancer's probe.
    """
    report = await health.check(sessionmaker.kw["bind"])
    return JSONResponse(status_code=200 if report.ok else 503, content=asdict(report))
