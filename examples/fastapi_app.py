"""A small FastAPI app on app_db: sign-up, cookie login, protected routes, customers, CSV import.

Run it against the database that DATABASE_URL (or the POSTGRES_* parts) names:

    uv run alembic upgrade head
    uv run uvicorn examples.fastapi_app:app

The interactive API docs are then at http://127.0.0.1:8000/docs. Its limits come from
``EXAMPLE_*`` variables (see ``ExampleSettings``).
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    Page,
    PoolTimeoutError,
    StatementTimeoutError,
    create_engine,
    create_sessionmaker,
    customers,
    health,
    sessions,
    transaction,
    users,
)
from app_db.engine import dispose
from app_db.models import (
    CustomerCreate,
    CustomerRead,
    CustomerUpdate,
    Session,
    User,
    UserCreate,
    UserRead,
)
from examples.csv_upload import CsvError, ImportTimeout, read_customers

COOKIE = "session"
RETRY_AFTER_SECONDS = 5
ECHO_LIMIT = 200
MIB = 1024 * 1024


class ExampleSettings(BaseSettings):
    """The app's limits, each read from ``EXAMPLE_`` and the upper-case name of its field."""

    model_config = SettingsConfigDict(
        env_prefix="EXAMPLE_", env_file=".env", extra="ignore", frozen=True
    )

    max_body_bytes: int = Field(default=MIB, ge=0)
    """Largest request body (413 beyond it) on every route but the CSV import."""
    max_upload_bytes: int = Field(default=10 * MIB, ge=0)
    """Largest CSV import request body, multipart framing included."""
    import_timeout: float = Field(default=60.0, gt=0)
    """Seconds a CSV import may take in all, checking and COPY; 503 beyond."""


class Login(BaseModel):
    email: str
    password: SecretStr


class Imported(BaseModel):
    imported: int


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """Open one transaction per request: commit when the handler succeeds, else roll back."""
    async with transaction(request.app.state.sessionmaker) as db:
        yield db


Db = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def current_login(request: Request, db: Db) -> tuple[Session, User]:
    """Validate the session cookie on every request to a protected route."""
    token = request.cookies.get(COOKIE)
    found = await sessions.validate(db, token) if token else None
    if found is None:
        raise HTTPException(status_code=401, detail="not logged in")
    return found


CurrentLogin = Annotated[tuple[Session, User], Depends(current_login)]

accounts = APIRouter(tags=["accounts"])
customer_routes = APIRouter(prefix="/customers", tags=["customers"])
uploads = APIRouter(prefix="/customers", tags=["customers"])  # with a larger body limit


def set_session_cookie(response: Response, token: str, session: Session) -> None:
    lifetime = session.expires_at - session.created_at
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        secure=True,
        samesite="lax",
        path="/",
    )


@accounts.post("/signup", status_code=201)
async def signup(body: UserCreate, db: Db) -> UserRead:
    return UserRead.model_validate(await users.create(db, body))


@accounts.post("/login")
async def login(body: Login, request: Request, response: Response, db: Db) -> UserRead:
    user = await users.authenticate(db, body.email, body.password)
    if user is None:
        raise HTTPException(status_code=401, detail="wrong email or password")
    previous = request.cookies.get(COOKIE)
    if previous:
        await sessions.revoke(db, previous)
    client = request.client.host if request.client else None
    token, session = await sessions.issue(
        db, user.id, ip=client, user_agent=request.headers.get("user-agent")
    )
    set_session_cookie(response, token, session)
    return UserRead.model_validate(user)


@accounts.post("/logout", status_code=204)
async def logout(request: Request, response: Response, db: Db, _: CurrentLogin) -> None:
    await sessions.revoke(db, request.cookies.get(COOKIE, ""))
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


@accounts.post("/logout-everywhere", status_code=204)
async def logout_everywhere(response: Response, db: Db, login: CurrentLogin) -> None:
    await sessions.revoke_all(db, login[1].id)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


@accounts.get("/me")
async def me(login: CurrentLogin) -> UserRead:
    return UserRead.model_validate(login[1])


@customer_routes.get("")
async def list_customers(
    db: Db,
    _: CurrentLogin,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
) -> Page[CustomerRead]:
    page = await customers.list(db, limit=limit, cursor=cursor, search=search)
    items = [CustomerRead.model_validate(c) for c in page.items]
    return Page[CustomerRead](items=items, next_cursor=page.next_cursor)


@customer_routes.post("", status_code=201)
async def create_customer(body: CustomerCreate, db: Db, _: CurrentLogin) -> CustomerRead:
    return CustomerRead.model_validate(await customers.create(db, body))


@customer_routes.get("/{customer_id}")
async def get_customer(customer_id: uuid.UUID, db: Db, _: CurrentLogin) -> CustomerRead:
    customer = await customers.get(db, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return CustomerRead.model_validate(customer)


@customer_routes.patch("/{customer_id}")
async def update_customer(
    customer_id: uuid.UUID, body: CustomerUpdate, db: Db, _: CurrentLogin
) -> CustomerRead:
    return CustomerRead.model_validate(await customers.update(db, customer_id, body))


@customer_routes.delete("/{customer_id}", status_code=204)
async def delete_customer(customer_id: uuid.UUID, db: Db, _: CurrentLogin) -> None:
    if not await customers.delete(db, customer_id):
        raise NotFoundError("customer", customer_id)


@uploads.post("/import")
async def import_customers(file: UploadFile, request: Request, db: Db, _: CurrentLogin) -> Imported:
    """Load a CSV file (header: name,email,phone) through COPY; a bad line refuses it all (422).

    Every row is checked in a worker thread before the COPY takes a pooled connection, so the
    connection is held for the COPY alone. The whole import must end within the time limit.
    """
    limit = request.app.state.settings.import_timeout
    deadline = time.monotonic() + limit
    rows = await asyncio.to_thread(read_customers, file.file, deadline=deadline)
    copy_time = asyncio.timeout(deadline - time.monotonic())
    try:
        async with copy_time:
            count = await customers.bulk_import(db, (row.customer() for row in rows))
    except TimeoutError:
        if copy_time.expired():
            raise ImportTimeout from None
        raise  # PoolTimeoutError or StatementTimeoutError: their own handler
    return Imported(imported=count)


async def healthz(request: Request) -> JSONResponse:
    """Answer 200 when the database runs ``SELECT 1`` in time, else 503; with pool figures."""
    report = await health.check(request.app.state.bind)
    return JSONResponse(status_code=200 if report.ok else 503, content=asdict(report))


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
    return app


app = create_app()
