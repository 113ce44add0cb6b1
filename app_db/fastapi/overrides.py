"""Calling an app's override of a dependency without FastAPI solving it.

``app_db.fastapi`` reads the request's sessionmaker with a call (``sessionmaker_for``), not as
a dependency: FastAPI spends about 10 µs solving each dependency of a request. An override
of ``get_sessionmaker`` still applies; this module calls it. It supports what a test or a
tenant router overrides with: a function (or an object with ``__call__``) of no parameters or
of the request, plain or ``async``. Anything that FastAPI itself would have to solve or enter
(a dependency, a query parameter, a generator) is refused with ``TypeError``.
"""

import inspect
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.websockets import WebSocket

USE_INSTEAD = "give the app its sessionmaker with app_db.fastapi.use(app, sessionmaker)"


def override_of(request: Request, dependency: Any) -> Any:
    """Return the override of ``dependency`` in the serving app (``request.app``), or ``None``."""
    return getattr(request.app, "dependency_overrides", {}).get(dependency)


async def called(override: Any, request: Request, expected: type) -> Any:
    """Call the override with the request where it asks for it; return what it gives.

    It runs on the event loop (FastAPI runs a plain ``def`` in its thread pool). It must give
    an instance of ``expected`` (awaited first when it gives an awaitable).
    """
    made = override(**dict.fromkeys(_request_parameters(override), request))
    if inspect.isawaitable(made):
        made = await made
    if not isinstance(made, expected):
        kind = type(made).__name__
        raise TypeError(_refusal(override, f"it gave {kind}, not {expected.__name__}"))
    return made


def _request_parameters(override: Any) -> list[str]:
    """Return the names of the override's request parameters; refuse any other parameter.

    The request is what FastAPI gives a parameter annotated ``Request`` (or a subclass) or
    ``HTTPConnection``; anything else, ``Annotated`` included, FastAPI would solve.
    """
    try:
        parameters = inspect.signature(override, eval_str=True).parameters
    except NameError as exc:  # an annotation that names what its module does not define
        raise TypeError(_refusal(override, f"its annotations do not evaluate ({exc})")) from exc
    names = []
    for name, parameter in parameters.items():
        kind = parameter.annotation
        if not (
            isinstance(kind, type)
            and issubclass(kind, HTTPConnection)
            and not issubclass(kind, WebSocket)
        ):
            raise TypeError(_refusal(override, f"its parameter {name!r} needs solving"))
        names.append(name)
    return names


def _refusal(override: Any, why: str) -> str:
    return f"app_db.fastapi cannot call the override {override!r}: {why}; {USE_INSTEAD}"
