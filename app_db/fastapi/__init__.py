"""The web layer for FastAPI apps on app_db: ``pip install 'app-db[fastapi]'``.

```python
from fastapi import FastAPI

from app_db.fastapi import CurrentUser, Db, OwnedDb, add_error_handlers, harden, lifespan

app = FastAPI(lifespan=lifespan)  # the engine, from DATABASE_URL, for the app's life
add_error_handlers(app)  # app_db's errors as 404, 409, 422, 429, 503, one body shape
harden(app)  # cross-site refusal, security headers, the client's address for app_db
```

``Db`` is the request's transaction, ``CurrentUser`` the logged-in user (401 without one),
``OwnedDb`` the request's transaction scoped to that user's rows; ``login`` and ``logout``
issue and end the session and its cookie.
"""

try:
    import fastapi as _fastapi  # noqa: F401 - checked here, so the error names the extra
except ImportError:  # pragma: no cover - the extra is installed in every test run
    raise ImportError("app_db.fastapi needs FastAPI: pip install 'app-db[fastapi]'") from None

from app_db.fastapi.auth import (
    COOKIE,
    CurrentLogin,
    CurrentUser,
    OwnedDb,
    login,
    logout,
    logout_everywhere,
    token_of,
)
from app_db.fastapi.database import Db, get_sessionmaker, healthz, lifespan, sessionmaker_for, use
from app_db.fastapi.errors import (
    RETRY_AFTER_SECONDS,
    ErrorBody,
    ErrorItem,
    add_error_handlers,
    error_response,
    error_responses,
)
from app_db.fastapi.hardening import (
    CarryPosition,
    CrossSiteRefusal,
    Hardened,
    RequestClient,
    SecurityHeaders,
    harden,
)
from app_db.fastapi.recovery import Mail, Mailer, recovery_routes

__all__ = [
    "COOKIE",
    "RETRY_AFTER_SECONDS",
    "CarryPosition",
    "CrossSiteRefusal",
    "CurrentLogin",
    "CurrentUser",
    "Db",
    "ErrorBody",
    "ErrorItem",
    "Hardened",
    "Mail",
    "Mailer",
    "OwnedDb",
    "RequestClient",
    "SecurityHeaders",
    "add_error_handlers",
    "error_response",
    "error_responses",
    "get_sessionmaker",
    "harden",
    "healthz",
    "lifespan",
    "login",
    "logout",
    "logout_everywhere",
    "recovery_routes",
    "sessionmaker_for",
    "token_of",
    "use",
]
