"""Sign-up, cookie login and logout."""

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, SecretStr

from app_db import Session, UserCreate, UserRead, sessions, users
from app_db.example.dependencies import COOKIE, CurrentLogin, Db

accounts = APIRouter(tags=["accounts"])


class Login(BaseModel):
    email: str
    password: SecretStr


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
    """Log in; 401 for a wrong email or password, 429 with ``Retry-After`` while throttled.

    The client's address and user agent reach ``authenticate`` and ``issue`` from the
    request (see ``web_security.RequestClient``).
    """
    user = await users.authenticate(db, body.email, body.password)
    if user is None:
        raise HTTPException(status_code=401, detail="wrong email or password")
    previous = request.cookies.get(COOKIE)
    if previous:
        await sessions.revoke(db, previous)
    token, session = await sessions.issue(db, user.id)
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
