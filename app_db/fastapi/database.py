"""The app's database: an engine for the app's life, and one transaction per request.

``lifespan`` builds the engine from the environment when the app starts and disposes of it
when the app stops; ``use(app, sessionmaker)`` gives the app a sessionmaker of your own
instead (a test's, joined to its rolled-back transaction). ``Db`` is a session in a
transaction that commits when the handler succeeds and rolls back when it raises.
"""

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

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
from app_db.fastapi import overrides

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

    app_db's dependencies read it through ``sessionmaker_for``, which calls an override of
    no parameters or of the ``Request``, and refuses any other.

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


SESSIONMAKER_STATE = "app_db_request_sessionmaker"


async def sessionmaker_for(request: Request) -> async_sessionmaker[AsyncSession]:
    """Return the request's sessionmaker: ``get_sessionmaker``'s, or its override's.

    ``Db``, ``CurrentUser``, ``CurrentLogin``, ``healthz`` and the recovery routes read it
    here, not as a FastAPI dependency (solving one costs about 10 µs a request), and share
    one per request. An override of ``get_sessionmaker`` in the serving app's
    ``dependency_overrides`` (``request.app``'s) is called once per request, on the event
    loop, with the request where it asks for it (a parameter annotated ``Request``), and
    must give an ``async_sessionmaker``. One that takes anything that FastAPI would have to
    solve (a dependency, a query parameter), or that yields, raises ``TypeError`` (see
    ``app_db.fastapi.overrides``): give such an app its sessionmaker with ``use``.
    """
    state = request.scope.setdefault("state", {})
    found: async_sessionmaker[AsyncSession] | None = state.get(SESSIONMAKER_STATE)
    if found is None:
        override = overrides.override_of(request, get_sessionmaker)
        if override is None:
            found = await get_sessionmaker(request)
        else:
            found = await overrides.called(override, request, async_sessionmaker)
        state[SESSIONMAKER_STATE] = found
    return found


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


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield the request's session: one transaction, committed on success, else rolled back.

    With a read replica, the transaction reads at least what this client wrote before: the
    position its last write left (a cookie, or the ``App-DB-Position`` header for API
    clients), which ``harden``'s ``CarryPosition`` sends back after each write. Without a
    replica none is sent, and this costs nothing.
    """
    after = request.cookies.get(POSITION_COOKIE) or request.headers.get(POSITION_HEADER)
    async with transaction(await sessionmaker_for(request), after=after) as db:
        yield db
    position = await commit_position(db)
    if position is not None:
        request.scope.setdefault("state", {})[POSITION_STATE] = position


Db = Annotated[AsyncSession, Depends(get_db, scope="function")]
"""The request's session. The commit runs before the response is sent, so a failed commit is
the request's error (a 503, a 409), never a 200 for a write that was lost."""


async def healthz(request: Request) -> JSONResponse:
    """Answer 200 when the database runs ``SELECT 1`` in time, else 503; with pool figures.

    Mount it with ``app.add_api_route("/healthz", healthz)`` for a load balancer's probe.
    """
    report = await health.check((await sessionmaker_for(request)).kw["bind"])
    return JSONResponse(status_code=200 if report.ok else 503, content=asdict(report))
