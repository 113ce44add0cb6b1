"""Web hardening as ASGI middleware: cross-site refusal, security headers, the request's client.

``harden(app)`` adds them all, in the order that puts the headers on every answer, with
``CarryPosition``, which sends a client the read position of its last write (see
``database.get_db``).

- ``CrossSiteRefusal`` answers 403 to a POST, PUT, PATCH or DELETE that a browser sent from
  another site: ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``, else an ``Origin``
  whose host is not the request's own ``Host`` (Go's ``CrossOriginProtection`` does the same).
  A request with neither header (curl, a server) passes: cross-site request forgery needs a
  browser, and browsers send one of them. ``SameSite=Lax`` alone lets a sibling subdomain
  through; this does not. ``trusted_origins`` lets named origins through.
- ``SecurityHeaders`` adds ``Strict-Transport-Security``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, ``Content-Security-Policy: frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` to every response that does not set its own, and
  ``Cache-Control: no-store`` unless the response set its own: an API's answers are a user's
  data, and no shared cache may keep them.
- ``RequestClient`` runs each request inside ``app_db.security.events.client(...)``, so the
  security events and the login throttle see the client's address and user agent. The address
  is the ASGI server's: behind a proxy, let the server read it from the forwarded headers
  (uvicorn's ``--forwarded-allow-ips``), and no further.
"""

import ipaddress
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app_db.fastapi.database import POSITION_COOKIE, POSITION_HEADER, POSITION_STATE
from app_db.security.events import client

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
HEADERS = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
NO_STORE = (b"cache-control", b"no-store")
REFUSAL = json.dumps({"detail": "cross-site request refused", "errors": []}).encode()


def _ip(host: str) -> str | None:
    """Return the peer's address when it is an IP address (not a socket path or a name)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _HttpMiddleware:
    """An ASGI middleware that acts on HTTP requests and passes anything else through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class CrossSiteRefusal(_HttpMiddleware):
    """Answer 403 to unsafe requests that a browser sent from another site."""

    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()) -> None:
        super().__init__(app)
        self.trusted = frozenset(origin.rstrip("/").lower() for origin in trusted_origins)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cross_site(scope):
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(REFUSAL)),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": REFUSAL})

    def _cross_site(self, scope: Scope) -> bool:
        if scope["method"] in SAFE_METHODS:
            return False
        origin = _header(scope, b"origin")
        if origin is not None and origin.rstrip("/").lower() in self.trusted:
            return False
        fetch_site = _header(scope, b"sec-fetch-site")
        if fetch_site is not None:
            return fetch_site not in ("same-origin", "none")
        if origin is None:
            return False
        host = _header(scope, b"host")
        return origin == "null" or host is None or urlsplit(origin).netloc.lower() != host.lower()


class SecurityHeaders(_HttpMiddleware):
    """Add the security headers, and ``Cache-Control: no-store``, where a response has none."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers += [header for header in (*HEADERS, NO_STORE) if header[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class RequestClient(_HttpMiddleware):
    """Attribute each request's security events and login attempts to its client."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        with client(_ip(peer[0]) if peer else None, _header(scope, b"user-agent")):
            await self.app(scope, receive, send)


class CarryPosition(_HttpMiddleware):
    """Send back the read position of what the request wrote, as a cookie and a header.

    ``get_db`` leaves it in the request's state when a read replica is configured and the
    request committed; the client's next request reads at least that far.
    """

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_position(message: Message) -> None:
            position = scope.get("state", {}).get(POSITION_STATE)
            if message["type"] == "http.response.start" and position is not None:
                cookie = f"{POSITION_COOKIE}={position}; Max-Age=300; Path=/; Secure; HttpOnly;"
                headers = [
                    *message.get("headers", ()),
                    (b"set-cookie", f"{cookie} SameSite=Lax".encode()),
                    (POSITION_HEADER.encode(), position.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_position)


def harden(app: Any, *, trusted_origins: Iterable[str] = ()) -> None:
    """Add the middlewares to a Starlette or FastAPI app (the last added runs first)."""
    app.add_middleware(CarryPosition)
    app.add_middleware(RequestClient)
    app.add_middleware(CrossSiteRefusal, trusted_origins=tuple(trusted_origins))
    app.add_middleware(SecurityHeaders)
