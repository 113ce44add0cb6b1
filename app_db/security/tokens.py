"""Opaque session tokens: 256 bits from the OS's CSPRNG; only their SHA-256 is stored."""

import hashlib
import re
import secrets

TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    """Return a fresh URL-safe token (43 characters, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> bytes:
    """Return the 32-byte SHA-256 digest under which a token is stored."""
    return hashlib.sha256(token.encode("ascii")).digest()


def is_well_formed(token: str) -> bool:
    """Return whether ``token`` has the shape ``new_token`` gives, before any hashing or query."""
    return isinstance(token, str) and _TOKEN_SHAPE.fullmatch(token) is not None
