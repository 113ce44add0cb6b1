"""A connect that the caller's timeout cuts short ends with the timeout, whatever the server does.

A server that hangs after the handshake (a frozen standby, a host that stopped mid-query) also
leaves asyncpg's cancel request unanswered; a graceful close of the half-made connection waits
for that request (asyncpg 0.30, without a limit), so the read outlived its timeout by as long as
the server hung. Here a proxy plays that server: it passes the handshake on, then holds every
byte, and every new connection, for as long as the test runs.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.engine import URL

from app_db import create_engine
from app_db.engine import dispose
from tests.conftest import settings

STATEMENT_TYPES = b"PQ"
"""The first byte of a Parse or a simple Query: the handshake's messages have no type byte."""


class HangingProxy:
    """Pass a connection's handshake on to the server, then hold everything."""

    def __init__(self, upstream: URL) -> None:
        self.upstream = upstream
        self.hung = asyncio.Event()
        self.held: list[asyncio.StreamWriter] = []
        self.pumps: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        if self.hung.is_set():  # the cancel request, or any later connection: never answered
            return
        server_reader, server_writer = await self._open_upstream()
        self.held.append(server_writer)
        for pump in (self._to_server(reader, server_writer), _copy(server_reader, writer)):
            task = asyncio.create_task(pump)
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

    async def _to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            if chunk[0] in STATEMENT_TYPES or self.hung.is_set():
                self.hung.set()  # the first statement: from here on the server "hangs"
                return
            writer.write(chunk)
            await writer.drain()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = self.upstream.query.get("host")
        port = self.upstream.port or 5432
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(self.upstream.host or "127.0.0.1", port)

    async def close(self) -> None:
        for task in list(self.pumps):
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        for writer in self.held:
            writer.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def hanging(empty_database: URL) -> AsyncIterator[URL]:
    """The URL of a proxy in front of ``empty_database`` that hangs at the first statement."""
    proxy = HangingProxy(empty_database)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = empty_database.set(host="127.0.0.1", port=port, query={})
    try:
        yield url
    finally:
        server.close()
        await proxy.close()
        await server.wait_closed()


async def test_a_connect_cut_short_by_a_timeout_does_not_wait_for_the_hung_server(
    hanging: URL,
) -> None:
    engine = create_engine(settings(hanging))  # the defaults: a 10 s connect timeout
    try:
        started = time.perf_counter()
        try:
            # The outer bound only turns a hang into a failure; the inner one is the caller's.
            async with asyncio.timeout(10):
                try:
                    async with asyncio.timeout(0.5):
                        async with engine.connect():
                            raise AssertionError("the proxy lets no statement through")
                except TimeoutError:
                    pass
        except TimeoutError:
            raise AssertionError("the cut connect waited for the hung server") from None
        assert time.perf_counter() - started < 2.0
    finally:
        await dispose(engine)
