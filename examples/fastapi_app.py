"""A small FastAPI app on app_db: sign-up, cookie login, protected routes, customers, CSV import.

Run it against the database that DATABASE_URL (or the POSTGRES_* parts) names:

    uv run alembic upgrade head
    uv run uvicorn examples.fastapi_app:app

The interactive API docs are then at http://127.0.0.1:8000/docs.
"""

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    Page,
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

COOKIE = "session"


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


def csv_rows(upload: UploadFile) -> Iterator[dict[str, Any]]:
    """Yield one mapping per CSV line (header: name,email,phone), empty cells as missing."""
    text = io.TextIOWrapper(upload.file, encoding="utf-8", newline="")
    for record in csv.DictReader(text):
        yield {key: value for key, value in record.items() if key and value}


@customer_routes.post("/import")
async def import_customers(file: UploadFile, db: Db, _: CurrentLogin) -> Imported:
    """Load a CSV file through COPY; a bad row rejects the whole file (422, with its row)."""
    return Imported(imported=await customers.bulk_import(db, csv_rows(file)))


async def healthz(request: Request) -> JSONResponse:
    """Answer 200 when the database runs ``SELECT 1`` in time, else 503; with pool figures."""
    report = await health.check(request.app.state.bind)
    return JSONResponse(status_code=200 if report.ok else 503, content=asdict(report))


def error_response(status: int, error: Exception, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": str(error), **extra})


def create_app(sessionmaker: async_sessionmaker[AsyncSession] | None = None) -> FastAPI:
    """Build the app; without a sessionmaker it makes one from the environment at start-up."""

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

    app = FastAPI(title="app_db example", lifespan=lifespan)
    if sessionmaker is not None:
        app.state.sessionmaker = sessionmaker
        app.state.bind = sessionmaker.kw["bind"]
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.include_router(accounts)
    app.include_router(customer_routes)

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_: Request, error: InvalidInputError) -> JSONResponse:
        return error_response(422, error, field=error.field, row=error.position)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, error: NotFoundError) -> JSONResponse:
        return error_response(404, error)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, error: ConflictError) -> JSONResponse:
        return error_response(409, error)

    return app


app = create_app()
