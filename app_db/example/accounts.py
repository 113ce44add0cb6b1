"""Sign-up, login (cookie or bearer token), logout, the password, and the user's devices."""

import uuid

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, SecretStr

from app_db import (
    InvalidInputError,
    NotFoundError,
    SessionRead,
    UserCreate,
    UserRead,
    sessions,
    users,
)
from app_db.fastapi import CurrentLogin, CurrentUser, Db, error_responses, login, logout
from app_db.fastapi import logout_everywhere as end_every_session

accounts = APIRouter(tags=["accounts"])


class Login(BaseModel):
    email: str
    password: SecretStr


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme, RFC 6750


class PasswordChange(BaseModel):
    current_password: SecretStr
    new_password: SecretStr


WRONG = "wrong email or password"


@accounts.post("/signup", status_code=201, responses=error_responses(409))
async def signup(body: UserCreate, db: Db) -> UserRead:
    return UserRead.model_validate(await users.create(db, body))


@accounts.post("/login", responses=error_responses(401, 429))
async def log_in(body: Login, request: Request, response: Response, db: Db) -> UserRead:
    """Log in with a session cookie; 401 for a wrong email or password, 429 while throttled."""
    user = await users.authenticate(db, body.email, body.password)
    if user is None:
        raise HTTPException(status_code=401, detail=WRONG)
    await login(db, request, response, user)
    return UserRead.model_validate(user)


@accounts.post("/token", responses=error_responses(401, 429))
async def token(body: Login, request: Request, response: Response, db: Db) -> Token:
    """Log in without a cookie; send the token back as ``Authorization: Bearer <token>``."""
    user = await users.authenticate(db, body.email, body.password)
    if user is None:
        raise HTTPException(status_code=401, detail=WRONG)
    return Token(access_token=await login(db, request, response, user, cookie=False))


@accounts.post("/logout", status_code=204)
async def log_out(request: Request, response: Response, db: Db, _: CurrentUser) -> None:
    await logout(db, request, response)


@accounts.post("/logout-everywhere", status_code=204)
async def logout_everywhere(response: Response, db: Db, user: CurrentUser) -> None:
    await end_every_session(db, response, user.id)


@accounts.get("/me")
async def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@accounts.post("/password", status_code=204, responses=error_responses(429))
async def change_password(body: PasswordChange, db: Db, current: CurrentLogin) -> None:
    """Change the password: the current one first (a wrong one is a 422, throttled as a failed
    login); every other device is signed out."""
    session, user = current
    if await users.authenticate(db, user.email, body.current_password) is None:
        raise InvalidInputError("wrong password", field="current_password")
    await users.set_password(db, user.id, body.new_password, keep_session_id=session.id)


@accounts.get("/sessions")
async def devices(db: Db, user: CurrentUser) -> list[SessionRead]:
    """List the user's live sessions (devices), newest first."""
    return [SessionRead.model_validate(s) for s in await sessions.list_for_user(db, user.id)]


@accounts.delete("/sessions/{session_id:uuid}", status_code=204, responses=error_responses(404))
async def sign_out_device(session_id: uuid.UUID, db: Db, user: CurrentUser) -> None:
    """Sign one device out."""
    if not await sessions.revoke_by_id(db, user.id, session_id):
        raise NotFoundError("session", session_id)
