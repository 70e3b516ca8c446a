"""Helpers of the network tests: test certificate authorities, and a small HTTP CONNECT
proxy that records what it is asked, as a company's proxy would see it."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trustme

T = TypeVar("T")


@dataclass(frozen=True)
class Tls:
    """A test CA (its PEM bundle in ``ca_file``) and a server context it signed."""

    ca_file: Path
    server: ssl.SSLContext


def make_tls(folder: Path, *names: str) -> Tls:
    """A new CA, and a server certificate from it for ``names`` (host names or IPs)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    ca_file = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(ca_file=ca_file, server=server)


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that opens every ``CONNECT`` tunnel to one local port,
    whatever host it names (as a proxy resolves names the client cannot).

    Attributes:
        requests: each request's first line and headers, as the proxy received them.
        tunnelled: every byte it carried through its tunnels, both ways.
        refuse: answer each ``CONNECT`` with this status instead of a tunnel.
    """

    def __init__(self, target_port: int, *, refuse: int | None = None) -> None:
        self.target_port = target_port
        self.refuse = refuse
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.tunnelled = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        first, *lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        self.requests.append((first, headers))
        if self.refuse is not None or not first.startswith("CONNECT "):
            status = self.refuse or 405
            writer.write(f"HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.tunnelled += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class LoopThread:
    """An event loop in a thread, for servers a test's subprocesses talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()
