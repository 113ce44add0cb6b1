"""New connections: the hosts of a list tried in turn, each within its own connect timeout, the
server kind the URL asks for, fencing, and TCP keepalives.

asyncpg's own connect timeout covers a whole list of hosts, so a hung first host would use it
all up and the second would never be tried. Here each host gets a connect of its own. With
several hosts, only a read-write server is taken unless ``target_session_attrs`` says
otherwise, and a host that just failed is tried after the others for a while.
"""

import contextlib
import socket
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.closing import close_if_cancelling
from app_db.cluster.fencing import Fence
from app_db.cluster.hosts import TARGET_ATTRS

TRIED_LAST_FOR = 30.0
"""Seconds a host that failed to connect is tried after the others."""
_KEEPALIVE_COUNT = 3
_Host = tuple[str | None, int | None]


class Connector:
    """Make the new connections of one engine (its ``do_connect`` event)."""

    def __init__(self, fence: Fence, *, default_target: str, tcp_user_timeout: float) -> None:
        self.fence = fence
        self.default_target = default_target
        self.tcp_user_timeout = tcp_user_timeout
        self._failed_at: dict[_Host, float] = {}

    def install(self, engine: AsyncEngine) -> None:
        """Make ``engine``'s pool connect through this connector."""
        event.listen(engine.sync_engine, "do_connect", self.connect)

    def connect(self, dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        """Return a connection to the first host that answers as asked and passes the fence."""
        candidates = _hosts(cparams)
        several = len(candidates) > 1
        target = cparams.get(TARGET_ATTRS) or (self.default_target if several else None)
        passes = ["standby", "any"] if target == "prefer-standby" else [target]
        error: Exception | None = None
        for wanted in passes:
            for host, port in self._ordered(candidates):
                params = {**cparams, "host": host, "port": port}
                if wanted is not None:
                    params[TARGET_ATTRS] = wanted
                try:
                    return self._open(dialect, cargs, params, f"{host}:{port}")
                except Exception as exc:
                    if not several:
                        raise
                    self._failed_at[host, port] = time.monotonic()
                    error = exc
        assert error is not None
        raise error

    def _open(self, dialect: Any, cargs: Any, params: dict[str, Any], where: str) -> Any:
        connection = dialect.connect(*cargs, **params)
        try:
            connection.run_async(lambda driver: self.fence.admit(driver, where))
        except BaseException:
            if not close_if_cancelling(connection):  # a refusal or an error: close it as usual
                with contextlib.suppress(Exception):
                    connection.terminate()
            raise
        self._failed_at.pop((params["host"], params["port"]), None)
        keep_alive(connection.driver_connection, self.tcp_user_timeout)
        return connection

    def _ordered(self, candidates: list[_Host]) -> list[_Host]:
        if not self._failed_at:
            return candidates
        recent = time.monotonic() - TRIED_LAST_FOR
        failed = [c for c in candidates if self._failed_at.get(c, recent) > recent]
        return [c for c in candidates if c not in failed] + failed


def _hosts(cparams: dict[str, Any]) -> list[_Host]:
    host, port = cparams.get("host"), cparams.get("port")
    if isinstance(host, list):
        ports = port if isinstance(port, list) else [port] * len(host)
        return list(zip(host, ports, strict=True))
    return [(host, port)]


def keep_alive(driver: Any, seconds: float) -> None:
    """Turn on TCP keepalives and ``TCP_USER_TIMEOUT`` on a TCP connection's socket."""
    transport = getattr(driver, "_transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if not seconds or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle = max(1, round(seconds))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", max(1, idle // _KEEPALIVE_COUNT)),
        ("TCP_KEEPCNT", _KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", round(seconds * 1000)),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
