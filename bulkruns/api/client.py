"""The HTTP client for Tallyfy's run endpoints: the only module outside the sandbox that
speaks aiohttp.

    async with Client(org="ORG", token=token) as client:
        page = await client.list_runs([("status", "complete")], page=1, per_page=100)
        reply = await client.archive(page.runs[0]["id"])

Every call is one request, never retried here (retries are the job's, with the shared
pacer). Outcomes are values (:class:`~bulkruns.api.answers.Page`,
:class:`~bulkruns.api.answers.Reply`) or exceptions from :mod:`bulkruns.errors`: an
:class:`~bulkruns.errors.APIError` subclass for an error status,
:class:`~bulkruns.errors.TransportError` when no answer came (``sent`` says whether the
request may have reached the server). No exception or repr ever contains the token.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yarl
from multidict import CIMultiDictProxy

from bulkruns import settings
from bulkruns.api.answers import Page, Reply, read_page, read_reply
from bulkruns.api.urls import DEFAULT_BASE_URL, encode_query, normalise_base_url
from bulkruns.errors import ConfigError, TransportError

__all__ = ["MAX_PER_PAGE", "Client"]

MAX_PER_PAGE = 100  # Tallyfy's cap; a larger per_page would be silently cut to it
_NO_AUTO_CONTENT_TYPE = ("Content-Type",)

try:
    _VERSION = importlib.metadata.version("bulkruns")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "dev"


class Client:
    """An async client for one organisation's runs.

    ``async with Client(org=..., token=...) as client: ...`` (or call :meth:`aclose`).

    Args:
        org: the Tallyfy organisation ID.
        token: the access token (sent as ``Authorization: Bearer``; never shown).
        base_url: the API root; see :func:`~bulkruns.api.urls.normalise_base_url`.
        concurrency: the most connections open at once.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds to wait for each read of the answer.

    Raises:
        ConfigError: an empty org or token, a token with whitespace, a bad base URL,
            plain http:// to a non-loopback host, or a non-positive limit.
    """

    def __init__(
        self,
        *,
        org: str,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        org = org.strip()
        if not org:
            raise ConfigError("the organisation ID is empty: set TALLYFY_ORG_ID or pass --org")
        if not token:
            raise ConfigError(
                "the access token is empty: set TALLYFY_ACCESS_TOKEN or use --token-file"
            )
        if any(c.isspace() or not c.isprintable() for c in token):
            # Never echo the token, not even in part.
            raise ConfigError(
                "the access token contains whitespace or control characters: check its source"
            )
        settings.whole("concurrency", concurrency, low=1)
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            settings.number(name, value, low=0, above=True, meaning="seconds")
        self.base_url = normalise_base_url(base_url)
        self.org = org
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._runs_path = f"{self.base_url}/organizations/{quote(org, safe='')}/runs"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "X-Tallyfy-Client": "APIClient",
            "User-Agent": f"bulkruns/{_VERSION}",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Client org={self.org!r} base_url={self.base_url!r}>"

    async def __aenter__(self) -> Client:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections. The client cannot be used afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                # sock_connect, not connect: waiting for a free pooled connection is not
                # a connection failure.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
                ),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                raise_for_status=False,
            )
            # aiohttp silently resends a PUT or DELETE once when a kept-alive connection
            # drops. Archive and delete are not idempotent in effect (a second archive
            # answers 404), so the caller must see the failure and decide, knowing the
            # outcome is unknown.
            self._session._retry_connection = False
        return self._session

    # --- the endpoints ---

    async def list_runs(
        self, params: Sequence[tuple[str, str]], *, page: int = 1, per_page: int = 100
    ) -> Page:
        """One page of ``GET /organizations/{org}/runs``.

        Args:
            params: query parameters (filters, ``sort``…), without ``page``/``per_page``.
            page: the page number, from 1.
            per_page: the page size, 1 to 100.
        """
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be >= 1 and per_page 1..{MAX_PER_PAGE}")
        if any(name in ("page", "per_page") for name, _ in params):
            raise ValueError("pass page and per_page as arguments, not in params")
        query = encode_query([*params, ("page", str(page)), ("per_page", str(per_page))])
        answer = await self._send("GET", self._runs_path, query=query)
        return read_page(*answer, page=page, per_page=per_page)

    async def get_run(self, run_id: str) -> Reply:
        """Read one run: ``GET /organizations/{org}/runs/{id}``.

        The reply's ``data`` is the run as it is now, ``users`` and ``groups`` included.
        An archived run is 404 here, as an unknown one is.
        """
        return read_reply(*await self._send("GET", self._run_path(run_id)))

    async def archive(self, run_id: str) -> Reply:
        """Archive a run: ``DELETE /organizations/{org}/runs/{id}``."""
        return read_reply(*await self._send("DELETE", self._run_path(run_id)))

    async def activate(self, run_id: str) -> Reply:
        """Restore an archived run: ``PUT /organizations/{org}/runs/{id}/activate``."""
        return read_reply(*await self._send("PUT", self._run_path(run_id) + "/activate"))

    async def update(self, run_id: str, fields: Mapping[str, Any]) -> Reply:
        """Change some fields of a run: ``PUT /organizations/{org}/runs/{id}``."""
        body = orjson.dumps(dict(fields))
        return read_reply(*await self._send("PUT", self._run_path(run_id), body=body))

    async def delete(self, run_id: str) -> Reply:
        """Permanently delete an archived run: ``DELETE …/runs/{id}/delete``.

        Tallyfy answers 200 with an empty body: the reply's ``data`` is None.
        """
        return read_reply(*await self._send("DELETE", self._run_path(run_id) + "/delete"))

    # --- plumbing ---

    def _run_path(self, run_id: str) -> str:
        return f"{self._runs_path}/{quote(run_id, safe='')}"

    async def _send(
        self, method: str, url: str, *, query: str = "", body: bytes | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Send one request; return the status, headers and body of any HTTP answer."""
        session = self._open()
        target = yarl.URL(f"{url}?{query}" if query else url, encoded=True)
        where = f"{method} {url}"  # the query is left out: it can be long, and it is ours
        try:
            async with session.request(
                method,
                target,
                headers=self._json_headers if body is not None else self._headers,
                data=body,
                # Otherwise aiohttp labels an empty PUT application/octet-stream.
                skip_auto_headers=_NO_AUTO_CONTENT_TYPE if body is None else None,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                return response.status, response.headers, payload
        except aiohttp.ClientConnectorError as exc:
            # DNS, refused, unreachable, TLS handshake: the request never left.
            raise TransportError(f"{where}: cannot connect: {exc}", sent=False) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportError(
                f"{where}: no connection within {self.connect_timeout:g} s", sent=False
            ) from exc
        except TimeoutError as exc:
            raise TransportError(
                f"{where}: no answer within {self.read_timeout:g} s; it may have been applied",
                sent=True,
            ) from exc
        except aiohttp.ClientError as exc:
            detail = str(exc) or type(exc).__name__
            raise TransportError(
                f"{where}: connection lost ({detail}); it may have been applied", sent=True
            ) from exc
