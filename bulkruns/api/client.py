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
request may have reached the server), its message naming the call (``archive``, ``list
page 3``), not the URL. No exception or repr ever contains the token.

TLS is always verified, against the system's CA bundle (or ``SSL_CERT_FILE``), or the
bundle given as ``ca_file``. An https:// API goes through the proxy ``HTTPS_PROXY`` names,
unless ``NO_PROXY`` exempts its host (see :func:`~bulkruns.api.urls.proxy_for`).
"""

from __future__ import annotations

import importlib.metadata
import os
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import yarl
from multidict import CIMultiDictProxy

from bulkruns import settings
from bulkruns.api.answers import Page, Reply, read_page, read_reply
from bulkruns.api.urls import (
    DEFAULT_BASE_URL,
    Proxy,
    encode_query,
    normalise_base_url,
    proxy_for,
)
from bulkruns.errors import ConfigError, TransportError

__all__ = ["MAX_PER_PAGE", "READ_TIMEOUT", "VERSION", "Client"]

MAX_PER_PAGE = 100  # Tallyfy's cap; a larger per_page would be silently cut to it
READ_TIMEOUT = 60.0
"""Seconds a request's answer is waited for, unless the client is told otherwise."""
_NO_AUTO_CONTENT_TYPE = ("Content-Type",)

try:
    VERSION = importlib.metadata.version("bulkruns")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "dev"


class Client:
    """An async client for one organisation's runs.

    ``async with Client(org=..., token=...) as client: ...`` (or call :meth:`aclose`).

    Args:
        org: the Tallyfy organisation ID.
        token: the access token (sent as ``Authorization: Bearer``; never shown).
        base_url: the API root; see :func:`~bulkruns.api.urls.normalise_base_url`.
        concurrency: the most connections open at once.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds to wait for the answer (for each read of it): a request
            that stalls longer fails, to be retried.
        ca_file: a PEM bundle of the certificate authorities to trust instead of the
            system's (a company's TLS-inspecting proxy, say).
        trust_env: take the proxy from ``HTTPS_PROXY`` and ``NO_PROXY``.

    Raises:
        ConfigError: an empty org or token, a token with whitespace, a bad base URL,
            plain http:// to a non-loopback host, a concurrency or timeout that is not
            positive, a CA file that cannot be read as PEM certificates, or a proxy variable
            that is not an http(s):// URL.
    """

    def __init__(
        self,
        *,
        org: str,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = READ_TIMEOUT,
        ca_file: str | os.PathLike[str] | None = None,
        trust_env: bool = True,
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
        self._tls: ssl.SSLContext | bool = True if ca_file is None else _trusting(ca_file)
        self.proxy = proxy_for(self.base_url, os.environ) if trust_env else None
        self._host = urlsplit(self.base_url).netloc
        self.org = org
        self.concurrency = concurrency
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._runs_path = f"{self.base_url}/organizations/{quote(org, safe='')}/runs"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "X-Tallyfy-Client": "APIClient",
            "User-Agent": f"bulkruns/{VERSION}",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        proxy = f" proxy={self.proxy.name!r}" if self.proxy is not None else ""
        return f"<Client org={self.org!r} base_url={self.base_url!r}{proxy}>"

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
                connector=aiohttp.TCPConnector(limit=self.concurrency, ssl=self._tls),
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
        answer = await self._send(f"list page {page}", "GET", self._runs_path, query=query)
        return read_page(*answer, page=page, per_page=per_page)

    async def get_run(self, run_id: str) -> Reply:
        """Read one run: ``GET /organizations/{org}/runs/{id}``.

        The reply's ``data`` is the run as it is now, ``users`` and ``groups`` included.
        An archived run is 404 here, as an unknown one is.
        """
        return read_reply(*await self._send("read", "GET", self._run_path(run_id)))

    async def archive(self, run_id: str) -> Reply:
        """Archive a run: ``DELETE /organizations/{org}/runs/{id}``."""
        return read_reply(*await self._send("archive", "DELETE", self._run_path(run_id)))

    async def activate(self, run_id: str) -> Reply:
        """Restore an archived run: ``PUT /organizations/{org}/runs/{id}/activate``."""
        url = self._run_path(run_id) + "/activate"
        return read_reply(*await self._send("activate", "PUT", url))

    async def update(self, run_id: str, fields: Mapping[str, Any]) -> Reply:
        """Change some fields of a run: ``PUT /organizations/{org}/runs/{id}``."""
        body = orjson.dumps(dict(fields))
        return read_reply(*await self._send("update", "PUT", self._run_path(run_id), body=body))

    async def delete(self, run_id: str) -> Reply:
        """Permanently delete an archived run: ``DELETE …/runs/{id}/delete``.

        Tallyfy answers 200 with an empty body: the reply's ``data`` is None.
        """
        url = self._run_path(run_id) + "/delete"
        return read_reply(*await self._send("delete", "DELETE", url))

    # --- plumbing ---

    def _run_path(self, run_id: str) -> str:
        return f"{self._runs_path}/{quote(run_id, safe='')}"

    async def _send(
        self, action: str, method: str, url: str, *, query: str = "", body: bytes | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Send one request; return the status, headers and body of any HTTP answer.

        ``action`` names the request in errors: ``archive``, ``list page 3``.
        """
        session = self._open()
        target = yarl.URL(f"{url}?{query}" if query else url, encoded=True)
        proxy = self.proxy
        try:
            async with session.request(
                method,
                target,
                headers=self._json_headers if body is not None else self._headers,
                data=body,
                # Otherwise aiohttp labels an empty PUT application/octet-stream.
                skip_auto_headers=_NO_AUTO_CONTENT_TYPE if body is None else None,
                allow_redirects=False,
                proxy=proxy.url if proxy is not None else None,
                proxy_headers=_proxy_headers(proxy),
            ) as response:
                payload = await response.read()
                return response.status, response.headers, payload
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransportError(
                f"{action}: no connection to {self._host} within {self.connect_timeout:g} s",
                sent=False,
            ) from exc
        except TimeoutError as exc:  # aiohttp's read timeout is one too
            raise TransportError(
                f"{action}: no answer within {self.read_timeout:g} s{_maybe_applied(method)}",
                sent=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._no_answer(action, method, exc) from exc

    def _no_answer(self, action: str, method: str, exc: aiohttp.ClientError) -> TransportError:
        """What a failed request comes to, said without the URL, the token or a password."""
        proxy = self.proxy.name if self.proxy is not None else ""
        lasting = True  # what a person must fix: no attempt after it would fare better
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            # The proxy answered the CONNECT with an error: nothing reached Tallyfy.
            problem = (
                f"the proxy {proxy} refused a tunnel to {self._host} "
                f"(HTTP {exc.status} {exc.message}); check HTTPS_PROXY and NO_PROXY"
            )
        elif isinstance(exc, aiohttp.ClientProxyConnectionError):
            problem = f"cannot connect to the proxy {proxy} ({exc.strerror}); check HTTPS_PROXY"
            lasting = False  # a proxy that is down may be up again
        elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cause = exc.certificate_error
            reason = getattr(cause, "verify_message", None) or str(cause)
            problem = (
                f"the TLS certificate of {self._host} is not trusted ({reason}); if a proxy "
                "inspects TLS, trust its CA bundle with --ca-file or SSL_CERT_FILE"
            )
        elif isinstance(exc, aiohttp.ClientConnectorError):
            # DNS, refused, unreachable, a TLS handshake: the request never left.
            problem = f"cannot connect to {self._host} ({exc.strerror or exc.os_error})"
            lasting = False
        else:
            detail = str(exc) or type(exc).__name__
            return TransportError(
                f"{action}: connection lost ({detail}){_maybe_applied(method)}", sent=True
            )
        return TransportError(f"{action}: {problem}", sent=False, lasting=lasting)


def _maybe_applied(method: str) -> str:
    """What a lost answer leaves open: a read changed nothing, a change may have happened."""
    return "" if method == "GET" else "; it may have been applied"


def _proxy_headers(proxy: Proxy | None) -> dict[str, str] | None:
    if proxy is None or proxy.authorization is None:
        return None
    return {"Proxy-Authorization": proxy.authorization}


def _trusting(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A TLS context that verifies servers against ``ca_file`` only.

    Raises:
        ConfigError: the file cannot be read, or holds no PEM certificate.
    """
    where = os.fspath(ca_file)
    try:
        return ssl.create_default_context(cafile=where)
    except ssl.SSLError:
        raise ConfigError(
            f"the CA file {where} (--ca-file or SSL_CERT_FILE) holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the CA file {where} (--ca-file or SSL_CERT_FILE): {exc.strerror or exc}"
        ) from None
