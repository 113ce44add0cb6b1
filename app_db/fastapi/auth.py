"""The logged-in user: a session token from the cookie, else an ``Authorization: Bearer``
header; ``login`` and ``logout`` issue and end it.

Both transports are security schemes of the OpenAPI document, so ``/docs`` has an Authorize
button. The cookie is ``__Host-session``: ``Secure``, ``HttpOnly``, ``SameSite=Lax``, for
``/`` and no ``Domain``, so a sibling subdomain can neither read nor set it. Cookies need the
cross-site refusal of ``harden`` (SameSite alone lets sibling subdomains through); a bearer
token, which a browser never sends by itself, does not.
"""

import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import Session, User, ownership, sessions, transaction
from app_db.fastapi.database import Db, borrowing_engine, sessionmaker_for

COOKIE = "__Host-session"
LOGIN_STATE = "app_db_login"
NOT_LOGGED_IN = "not logged in"

_bearer = HTTPBearer(
    scheme_name="bearer token",
    description="the session token that `POST /login` returns, for clients that are not browsers",
    auto_error=False,
)
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def token_of(request: Request) -> str | None:
    """Return the request's session token: the cookie's, else the bearer header's."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return cookie
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _login(
    sessionmaker: async_sessionmaker[AsyncSession],
    cookie: str | None,
    bearer: HTTPAuthorizationCredentials | None,
) -> tuple[Session, User]:
    """Return the live session and its user; answer 401 without one.

    A request that carries both a cookie and a bearer token is served only when both are
    live and of one user: a credential that fails is never outweighed by another.

    The lookup is one coalesced statement of its own, not in the request's ``Db``: on the
    app's engine it borrows a pooled connection for that statement alone, so a request that
    only reads the user builds no session and sends no ``BEGIN`` (see ``app_db.fastpath``).
    Like any first statement, it sees every committed write. The instances it returns are
    detached: ``db.add(user)`` makes changes to them flush. With a sessionmaker whose sessions
    hold a connection (a test's), it runs in a session on that connection instead. The
    dependency keeps its answer in the request's state: it runs once per request, whether
    the handler asks for ``CurrentLogin``, ``CurrentUser`` or both.
    """
    tokens = [t for t in (cookie, bearer.credentials if bearer is not None else None) if t]
    if not tokens:
        raise HTTPException(401, NOT_LOGGED_IN, headers={"WWW-Authenticate": "Bearer"})
    engine = borrowing_engine(sessionmaker)
    if engine is not None:  # what the session would do, without building one
        found = [await sessions.validate(engine, token) for token in dict.fromkeys(tokens)]
    else:  # a session on a connection (a test's): the lookup runs in its transaction
        async with transaction(sessionmaker) as db:
            found = [await sessions.validate(db, token) for token in dict.fromkeys(tokens)]
    logins = [login for login in found if login is not None]
    if not logins or len(logins) < len(found) or len({u.id for _, u in logins}) > 1:
        raise HTTPException(401, NOT_LOGGED_IN, headers={"WWW-Authenticate": "Bearer"})
    return logins[0]


class _LoginByCookie(APIKeyCookie):
    """The session cookie's security scheme, which also answers with the request's login.

    FastAPI solves each dependency of a request at a cost of about 10 µs. A function that
    took the cookie's scheme as a dependency of its own would be one more; this scheme is
    the dependency, and reads the cookie itself as ``APIKeyCookie`` would. The bearer
    scheme stays a dependency, so that the OpenAPI document lists both schemes. The
    sessionmaker is not one: ``sessionmaker_for`` reads it, the request's ``Db``'s.
    """

    def __init__(self, *, user_only: bool) -> None:
        super().__init__(
            name=COOKIE,
            scheme_name="session cookie",
            description="the cookie that `POST /login` sets",
            auto_error=False,
        )
        self.user_only = user_only

    async def __call__(  # type: ignore[override]
        self, request: Request, bearer: BearerToken
    ) -> tuple[Session, User] | User:
        state = request.scope.setdefault("state", {})
        found: tuple[Session, User] | None = state.get(LOGIN_STATE)
        if found is None:
            cookie = request.cookies.get(COOKIE) or None
            sessionmaker = await sessionmaker_for(request)
            found = state[LOGIN_STATE] = await _login(sessionmaker, cookie, bearer)
        return found[1] if self.user_only else found


CurrentLogin = Annotated[tuple[Session, User], Depends(_LoginByCookie(user_only=False))]
"""The request's live login session and its user (401 without)."""

CurrentUser = Annotated[User, Depends(_LoginByCookie(user_only=True))]
"""The logged-in user (401 without)."""


async def owned_db(db: Db, user: CurrentUser) -> AsyncSession:
    """Return the request's session, scoped to the logged-in user's rows."""
    await ownership.scope(db, user.id)
    return db


OwnedDb = Annotated[AsyncSession, Depends(owned_db)]
"""The request's session, scoped to the logged-in user (see ``app_db.ownership``): the
customers functions, and any SQL run on it, reach only that user's customers (401 without a
login). It is the same session as ``Db`` in that request."""


async def login(
    db: AsyncSession, request: Request, response: Response, user: User, *, cookie: bool = True
) -> str:
    """Start a session for ``user``, set its cookie, and return its token.

    The session the request came with, if any, is revoked: a login never keeps a token that
    was set before it (session fixation). Call it after ``users.authenticate`` succeeded.
    With ``cookie=False`` no cookie is set: for a client that sends the token as a bearer
    token (return it in the body only then, so that no script of a browser page reads it).
    """
    previous = token_of(request)
    if previous:
        await sessions.revoke(db, previous)
    token, session = await sessions.issue(db, user.id)
    if not cookie:
        return token
    lifetime = session.expires_at - session.created_at
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return token


async def logout(db: AsyncSession, request: Request, response: Response) -> bool:
    """Revoke the request's session, clear its cookie, and return whether one was live."""
    token = token_of(request)
    revoked = await sessions.revoke(db, token) if token else False
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return revoked


async def logout_everywhere(db: AsyncSession, response: Response, user_id: uuid.UUID) -> int:
    """Revoke every session of the user, clear this one's cookie; return how many ended."""
    revoked = await sessions.revoke_all(db, user_id)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return revoked
