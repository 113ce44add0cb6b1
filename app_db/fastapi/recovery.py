"""Password reset and email verification over HTTP; the app gives the function that mails.

``recovery_routes(send)`` answers:

- ``POST /password/forgot`` ``{"email"}``: 202 whatever the email (no answer tells which
  emails have accounts; 429 while throttled). For an active account, ``send`` gets a ``Mail``
  with a reset token, after the response has gone, so its time is not the answer's;
- ``POST /password/reset`` ``{"token", "new_password"}``: 204, every session of the user
  ended; 400 for a token that is unknown, expired or spent, 422 for a refused password;
- ``POST /email/verification``: 202, and ``send`` gets a verification token for the
  logged-in user's email (401 without a login);
- ``POST /email/verify`` ``{"token"}``: the user, now verified; 400 for a bad token.

The app puts the token in a link to a page of its own, which posts it back.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import UserRead, transaction, users
from app_db.fastapi.auth import CurrentUser
from app_db.fastapi.database import Db, sessionmaker_for
from app_db.fastapi.errors import error_responses
from app_db.models.token import EMAIL_VERIFICATION, PASSWORD_RESET


@dataclass(frozen=True, slots=True)
class Mail:
    """A message to send: to whom, why, and the token its link carries."""

    to: str
    user_id: uuid.UUID
    purpose: str
    """``password_reset`` or ``email_verification``."""
    token: str


Mailer = Callable[[Mail], Awaitable[None]]
"""Send a ``Mail`` (by SMTP, a mail API, a queue...). Keep the token out of any log above
INFO: whoever reads it can use it."""


class ForgotPassword(BaseModel):
    email: str


class ResetPassword(BaseModel):
    token: str
    new_password: SecretStr


class VerifyEmail(BaseModel):
    token: str


async def _mail_reset(
    sessionmaker: async_sessionmaker[AsyncSession], send: Mailer, email: str, token: str
) -> None:
    async with transaction(sessionmaker) as db:
        user = await users.get_by_email(db, email)
    if user is not None:
        await send(Mail(to=user.email, user_id=user.id, purpose=PASSWORD_RESET, token=token))


def recovery_routes(send: Mailer) -> APIRouter:
    """Return the routes of password reset and email verification, mailing through ``send``."""
    router = APIRouter(tags=["accounts"])

    @router.post("/password/forgot", status_code=202, responses=error_responses(429))
    async def forgot_password(
        body: ForgotPassword, db: Db, request: Request, later: BackgroundTasks
    ) -> None:
        token = await users.forgot_password(db, body.email)
        if token is not None:
            later.add_task(_mail_reset, await sessionmaker_for(request), send, body.email, token)

    @router.post("/password/reset", status_code=204, responses=error_responses(400))
    async def reset_password(body: ResetPassword, db: Db) -> None:
        await users.reset_password(db, body.token, body.new_password)

    @router.post("/email/verification", status_code=202)
    async def request_verification(user: CurrentUser, db: Db, later: BackgroundTasks) -> None:
        token = await users.request_verification(db, user.id)
        mail = Mail(to=user.email, user_id=user.id, purpose=EMAIL_VERIFICATION, token=token)
        later.add_task(send, mail)

    @router.post("/email/verify", responses=error_responses(400))
    async def verify_email(body: VerifyEmail, db: Db) -> UserRead:
        return UserRead.model_validate(await users.verify_email(db, body.token))

    return router
