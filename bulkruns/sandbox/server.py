"""Serving a sandbox on a local port, as an async context manager."""

from __future__ import annotations

import ssl
from types import TracebackType

from aiohttp import web

from bulkruns.sandbox.app import make_app, state_of
from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.state import SandboxState

__all__ = ["Sandbox"]

# Where to reach a server bound to every address of a family, from this machine.
_LOOPBACK_OF = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class Sandbox:
    """A sandbox server on ``host:port`` (127.0.0.1 and a free port by default).

    ``async with Sandbox(SandboxConfig(runs=500)) as sandbox:`` then point a client at
    ``sandbox.base_url`` with ``sandbox.org`` and ``sandbox.token``; ``sandbox.state``
    shows what the server holds and has served. With ``ssl_context`` (a server context
    holding a certificate) it serves https.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.host = host
        self.ssl_context = ssl_context
        self._requested_port = port
        self.app = make_app(self.config)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def state(self) -> SandboxState:
        """The live runs and request accounting."""
        return state_of(self.app)

    @property
    def org(self) -> str:
        """The organisation ID to use in paths."""
        return self.config.org

    @property
    def token(self) -> str:
        """The bearer token the sandbox accepts."""
        return self.config.token

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the sandbox is not started")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://host:port`` (``https://`` with TLS), where the stats live
        (``/_sandbox/stats``).

        A sandbox bound to every address (``0.0.0.0``, ``::``) is named by its loopback
        address: plain http:// is only accepted to a loopback host.
        """
        host = _LOOPBACK_OF.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, like Tallyfy's ``https://go.tallyfy.com/api``."""
        return self.root_url + "/api"

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        config = self.config
        # In-flight requests get this long to finish at close; stalls end at once.
        grace = 1.0 + config.latency + config.jitter
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=grace)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.host, self._requested_port, ssl_context=self.ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving; stalled requests are dropped. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.closing.set()
        await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"<Sandbox {where} org={self.org!r} runs={len(self.state.store)}>"
