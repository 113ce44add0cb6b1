"""Builders for rows the tests need, fast: one real argon2id hash, computed once."""

import itertools
from functools import cache

from sqlmodel.ext.asyncio.session import AsyncSession

from app_db.models import User, UserCreate
from app_db.security.passwords import HASHER

PASSWORD = "correct horse battery"
_numbers = itertools.count()


@cache
def password_hash() -> str:
    return HASHER.hash(PASSWORD)


async def make_user(db: AsyncSession, email: str | None = None, *, active: bool = True) -> User:
    """Insert a user whose password is ``PASSWORD``, without paying for a new hash."""
    address = email or f"user{next(_numbers)}@example.com"
    create = UserCreate.model_validate({"email": address, "password": PASSWORD})
    user = User.model_validate(
        create, update={"password_hash": password_hash(), "is_active": active}
    )
    db.add(user)
    await db.flush()
    return user
