"""Expected failures answered with their status; nothing echoes large or broken input."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app_db import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    PoolTimeoutError,
    StatementTimeoutError,
    ThrottledError,
)
from app_db.example.csv_upload import CsvError, ImportTimeout

RETRY_AFTER_SECONDS = 5
ECHO_LIMIT = 200


def printable(value: object) -> object:
    """Return a string short and encodable: errors never echo large or broken input."""
    if not isinstance(value, str):
        return value
    short = value if len(value) <= ECHO_LIMIT else value[:ECHO_LIMIT] + "..."
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int, error: Exception, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    content = {"detail": printable(str(error))} | {k: printable(v) for k, v in extra.items()}
    return JSONResponse(status_code=status, content=content, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Answer expected failures with their status; 503s say when to try again."""
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """Answer 422 with where and why, never the input (FastAPI's default echoes it)."""
        detail = [
            {
                "type": e["type"],
                "loc": [printable(part) for part in e["loc"]],
                "msg": printable(e["msg"]),
            }
            for e in error.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_: Request, error: InvalidInputError) -> JSONResponse:
        return error_response(422, error, field=error.field, row=error.position)

    @app.exception_handler(CsvError)
    async def invalid_csv(_: Request, error: CsvError) -> JSONResponse:
        return error_response(422, error, line=error.line, row=error.row, field=error.field)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, error: NotFoundError) -> JSONResponse:
        return error_response(404, error)

    @app.exception_handler(ThrottledError)
    async def throttled(_: Request, error: ThrottledError) -> JSONResponse:
        return error_response(429, error, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, error: ConflictError) -> JSONResponse:
        return error_response(409, error)

    @app.exception_handler(DatabaseUnavailableError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(StatementTimeoutError)
    async def database_busy(_: Request, error: Exception) -> JSONResponse:
        return error_response(503, error, headers=retry)

    @app.exception_handler(ImportTimeout)
    async def import_timeout(request: Request, _: ImportTimeout) -> JSONResponse:
        limit = request.app.state.settings.import_timeout
        message = f"the import did not finish within {limit:g} s; nothing was imported"
        return JSONResponse(status_code=503, content={"detail": message}, headers=retry)
