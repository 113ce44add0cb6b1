"""Errors as HTTP answers: a status for each of app_db's errors, and one body shape for all.

Every error answer, app_db's, request validation's and FastAPI's own (401, 404, 405...), is
``ErrorBody``: ``{"detail": "...", "errors": [{"field": ..., "message": ..., "position": ...}]}``.
No answer repeats the input it refuses. The OpenAPI document declares the shape, for 422
instead of FastAPI's ``HTTPValidationError``, and the statuses every route can answer.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app_db import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    InvalidTokenError,
    NotFoundError,
    PoolTimeoutError,
    StatementTimeoutError,
    ThrottledError,
)

RETRY_AFTER_SECONDS = 5
"""What a 503 tells the client to wait: the pool or the server is busy or away."""
ECHO_LIMIT = 200
UNSAFE = frozenset({"post", "put", "patch", "delete"})


class ErrorItem(BaseModel):
    """One problem: where (a field, and the row of a bulk input) and what."""

    field: str | None = None
    message: str
    position: int | None = None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="what went wrong, in one line")
    errors: list[ErrorItem] = Field(
        default_factory=list, description="each refused field, for 422; else empty"
    )


def printable(value: object) -> str:
    """Return text short and encodable: errors never echo large or broken input."""
    text = str(value)
    short = text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int,
    detail: object,
    errors: Sequence[ErrorItem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Return an error answer with ``ErrorBody``; every text in it is cut short and made
    encodable (``printable``)."""
    items = [
        ErrorItem(
            field=None if e.field is None else printable(e.field),
            message=printable(e.message),
            position=e.position,
        )
        for e in errors
    ]
    body = ErrorBody(detail=printable(detail), errors=items)
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def _refused(error: InvalidInputError) -> list[ErrorItem]:
    return [
        ErrorItem(field=d.get("field"), message=str(d["message"]), position=error.position)
        for d in error.details
    ]


def _invalid_request(error: RequestValidationError) -> list[ErrorItem]:
    return [
        ErrorItem(field=".".join(str(part) for part in e["loc"]), message=e["msg"])
        for e in error.errors()
    ]


Handler = Callable[[Request, Any], Any]


def add_error_handlers(app: FastAPI, *, retry_after: int = RETRY_AFTER_SECONDS) -> None:
    """Answer app_db's errors with their status and ``ErrorBody``, and declare them.

    422 for refused input (with each field and row), 400 for a one-time token that is not valid,
    404 not found, 409 conflict, 429 with
    ``Retry-After`` while a login is throttled, 503 with ``Retry-After`` while the database is
    unreachable, busy or too slow. Request validation and FastAPI's own errors use the same
    body. The app's OpenAPI document says so.
    """
    retry = {"Retry-After": str(retry_after)}

    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "the request is not valid", _invalid_request(error))

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(error.status_code, error.detail, headers=headers)

    async def invalid_input(_: Request, error: InvalidInputError) -> JSONResponse:
        return error_response(422, error, _refused(error))

    async def bad_token(_: Request, error: InvalidTokenError) -> JSONResponse:
        return error_response(400, error)

    async def not_found(_: Request, error: NotFoundError) -> JSONResponse:
        return error_response(404, error)

    async def conflict(_: Request, error: ConflictError) -> JSONResponse:
        return error_response(409, error)

    async def throttled(_: Request, error: ThrottledError) -> JSONResponse:
        return error_response(429, error, headers={"Retry-After": str(error.retry_after)})

    async def unavailable(_: Request, error: Exception) -> JSONResponse:
        return error_response(503, error, headers=retry)

    handlers: dict[type[Exception], Handler] = {
        RequestValidationError: invalid_request,
        HTTPException: http_error,
        InvalidInputError: invalid_input,
        InvalidTokenError: bad_token,
        NotFoundError: not_found,
        ConflictError: conflict,
        ThrottledError: throttled,
        DatabaseUnavailableError: unavailable,
        PoolTimeoutError: unavailable,
        StatementTimeoutError: unavailable,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    declare_errors(app)


def allowed_methods(request: Request) -> list[str]:
    """Return the methods that some route of the app serves at the request's path.

    Starlette's 405 names only the methods of the first route that matched the path, so
    ``/customers`` served by one route for GET and another for POST said ``Allow: GET``.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "__none__"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses=`` of a route that may answer these statuses with ``ErrorBody``."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


_DESCRIPTIONS = {
    400: "the request could not be read, or its token is not valid (expired or used)",
    401: "not logged in",
    403: "refused: a request from another site",
    404: "not found",
    405: "method not allowed",
    409: "conflicts with a row that exists",
    413: "the request body is too large",
    422: "the input was refused: each field says why",
    429: "too many failed attempts: see Retry-After",
    503: "the database is unavailable or busy: see Retry-After",
}


def declare_errors(app: FastAPI) -> None:
    """Make the app's OpenAPI document declare ``ErrorBody`` for the errors every route can
    answer: 422 (in place of ``HTTPValidationError``), 503, 401 on routes that need a login,
    403 on unsafe methods (the cross-site refusal)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        _declare(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(
        ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"]
    )
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    body.pop("$defs", None)
    schemas["ErrorBody"] = body
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for methods in document.get("paths", {}).values():
        for method, operation in methods.items():
            statuses = [422, 503]
            if operation.get("security"):
                statuses.append(401)
            if method in UNSAFE:
                statuses.append(403)
            if "requestBody" in operation:
                statuses += [400, 413]  # a body that cannot be read, or one too large
            responses = operation.setdefault("responses", {})
            for status in statuses:
                answer = responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
                answer["content"] = error
