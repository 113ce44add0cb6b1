"""A small FastAPI app on app_db: sign-up, login, password reset and email verification,
each user's own customers, CSV import.

Built on the public web layer, ``app_db.fastapi``, as an app of yours would be. ``app-db dev``
serves it on an embedded, migrated PostgreSQL. Against the database that DATABASE_URL (or the
POSTGRES_* parts) names, after ``app-db migrate``:

    uvicorn app_db.example.app:app

The interactive API docs are then at http://127.0.0.1:8000/docs. Its limits come from
``EXAMPLE_*`` variables (see ``ExampleSettings``).
"""

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.example.accounts import accounts
from app_db.example.customer_routes import customer_routes, uploads
from app_db.example.errors import add_upload_errors
from app_db.example.mail import mailer
from app_db.example.settings import ExampleSettings
from app_db.fastapi import (
    add_error_handlers,
    harden,
    healthz,
    lifespan,
    recovery_routes,
    use,
)


def create_app(
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    settings: ExampleSettings | None = None,
) -> FastAPI:
    """Build the app; without a sessionmaker it makes one from the environment at start-up.

    Without ``settings`` it reads its limits from ``EXAMPLE_*`` variables.
    """
    settings = settings if settings is not None else ExampleSettings()
    app = FastAPI(title="app_db example", lifespan=lifespan, max_body_size=settings.max_body_bytes)
    if sessionmaker is not None:
        use(app, sessionmaker)
    app.state.settings = settings
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.include_router(accounts)
    app.include_router(recovery_routes(mailer(settings.public_url)))
    app.include_router(customer_routes)
    app.include_router(uploads, max_body_size=settings.max_upload_bytes)
    add_error_handlers(app)
    add_upload_errors(app)
    harden(app, trusted_origins=settings.trusted_origins)
    return app


app = create_app()
