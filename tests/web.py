"""An HTTP client of an app in the suite's own process: httpx over ASGI, no server."""

from typing import Any

import httpx

BASE = "https://testserver"


def asgi_client(app: Any, base_url: str = BASE, **options: Any) -> httpx.AsyncClient:
    """Return a client that calls ``app`` directly, over HTTPS as a hardened app requires."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=base_url, **options)
