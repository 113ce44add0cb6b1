"""Per-request dependencies: one transaction per request, and the logged-in user."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import Session, User, sessions, transaction

COOKIE = "__Host-session"
"""The ``__Host-`` prefix makes browsers keep it only if it is ``Secure``, for ``/``, with no
``Domain``: a sibling subdomain cannot set or overwrite it."""


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
