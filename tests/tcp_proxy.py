"""A loopback TCP proxy to a test server that a test can take down and bring back."""

import asyncio
import contextlib

from sqlalchemy.engine import URL

from tests.pgbouncer import free_port


class Proxy:
    """Forward 127.0.0.1:``port`` to the server of ``target`` (TCP or its unix socket)."""

    def __init__(self, target: URL) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> URL:
        """Return ``target``'s URL, reached through the proxy."""
        return self.target.set(host="127.0.0.1", port=self.port).difference_update_query(["host"])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a crashed server would."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        if server is not None:
            # Since Python 3.12 this waits for the server's connections too: cut them first.
            await server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = self.target.query.get("host")
        port = self.target.port or 5432
        if isinstance(socket_dir, str):
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(self.target.host or "127.0.0.1", port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._open.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        for end in (writer, up_writer):
            self._open.discard(end)
            end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.write_eof()
