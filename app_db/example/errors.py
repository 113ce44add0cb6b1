"""The CSV upload's own errors, answered in the web layer's error body."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app_db.example.csv_upload import CsvError, ImportTimeout
from app_db.fastapi import RETRY_AFTER_SECONDS, ErrorItem, error_response


def add_upload_errors(app: FastAPI) -> None:
    """Answer a refused CSV with 422 (its line, row and field), a slow import with 503."""

    @app.exception_handler(CsvError)
    async def invalid_csv(_: Request, error: CsvError) -> JSONResponse:
        where = ErrorItem(field=error.field, message=str(error), position=error.row)
        return error_response(422, error, [where])

    @app.exception_handler(ImportTimeout)
    async def import_timeout(request: Request, _: ImportTimeout) -> JSONResponse:
        limit = request.app.state.settings.import_timeout
        message = f"the import did not finish within {limit:g} s; nothing was imported"
        return error_response(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
