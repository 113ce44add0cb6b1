"""A small FastAPI app on app_db: sign-up, cookie login, protected routes, customers, CSV import.

``app-db dev`` serves it on an embedded, migrated PostgreSQL. Against the database that
DATABASE_URL (or the POSTGRES_* parts) names, after ``app-db migrate``:

    uvicorn app_db.example.app:app

The interactive API docs are then at http://127.0.0.1:8000/docs. Its limits come from
``EXAMPLE_*`` variables (see ``ExampleSettings``).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import create_engine, create_sessionmaker, health
from app_db.engine import dispose
from app_db.example.accounts import accounts
from app_db.example.customer_routes import customer_routes, uploads
from app_db.example.errors import add_error_handlers
from app_db.example.settings import ExampleSettings
from app_db.example.web_security import CrossSiteRefusal, RequestClient, SecurityHeaders


async def healthz(request: Request) -> JSONResponse:
    """Answer 200 when the database runs ``SELECT 1`` in time, else 503; with pool figures."""
    report = await health.check(request.app.state.bind)
    return JSONResponse(status_code=200 if report.ok else 503, content=asdict(report))


def create_app(
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    settings: ExampleSettings | None = None,
) -> FastAPI:
    """Build the app; without a sessionmaker it makes one from the environment at start-up.

    Without ``settings`` it reads its limits from ``EXAMPLE_*`` variables.
    """
    settings = settings if settings is not None else ExampleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sessionmaker is not None:
            yield
            return
        engine = create_engine()
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.bind = engine
        try:
            yield
        finally:
            await dispose(engine)

    app = FastAPI(title="app_db example", lifespan=lifespan, max_body_size=settings.max_body_bytes)
    app.state.settings = settings
    if sessionmaker is not None:
        app.state.sessionmaker = sessionmaker
        app.state.bind = sessionmaker.kw["bind"]
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.include_router(accounts)
    app.include_router(customer_routes)
    app.include_router(uploads, max_body_size=settings.max_upload_bytes)
    add_error_handlers(app)
    app.add_middleware(RequestClient)
    app.add_middleware(CrossSiteRefusal, trusted_origins=settings.trusted_origins)
    app.add_middleware(SecurityHeaders)  # the last added is the outermost: on every answer
    return app


app = create_app()
