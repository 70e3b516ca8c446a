"""The HTTP client for Tallyfy's run endpoints: the only module outside the sandbox that
speaks aiohttp.

    async with Client(org="ORG", token=token) as client:
        page = await client.list_runs([("status", "complete")], page=1, per_page=100)
        reply = await client.archive(page.runs[0]["id"])

Every call is one request, never retried here (retries are the engine's job, with the
shared pacer). Outcomes are values (:class:`Page`, :class:`Reply`) or exceptions from
:mod:`bulkruns.errors`: an :class:`~bulkruns.errors.APIError` subclass for an error status,
:class:`~bulkruns.errors.TransportError` when no answer came (``sent`` says whether the
request may have reached the server). No exception or repr ever contains the token.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import yarl
from multidict import CIMultiDictProxy

from bulkruns.errors import APIError, ConfigError, ServerError, TransportError, api_error
from bulkruns.retry import parse_retry_after

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PER_PAGE",
    "Client",
    "Page",
    "Reply",
    "is_loopback_host",
    "normalise_base_url",
    "server_key",
]

DEFAULT_BASE_URL = "https://go.tallyfy.com/api"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TALLYFY_ROOT_API = "https://api.tallyfy.com"  # the same API as DEFAULT_BASE_URL, at /
MAX_PER_PAGE = 100  # Tallyfy's cap; a larger per_page would be silently cut to it
_MESSAGE_LIMIT = 300  # characters of a server's message kept in an error
_NO_AUTO_CONTENT_TYPE = ("Content-Type",)

try:
    _VERSION = importlib.metadata.version("bulkruns")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "dev"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a run listing.

    Attributes:
        runs: the ``data`` list, as parsed (run fields are not interpreted).
        total: ``meta.pagination.total``: how many runs match, right now.
        per_page: the page size asked for.
        current_page: the page number asked for (1-based).
        request_id: the ``X-Request-Id`` response header.
    """

    runs: list[dict[str, Any]]
    total: int
    per_page: int
    current_page: int
    request_id: str | None

    @property
    def page_count(self) -> int:
        """Pages in the listing, from ``total`` and ``per_page``.

        Never Tallyfy's ``total_pages``, which has been seen computed with page size 10.
        """
        return math.ceil(self.total / self.per_page)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a mutation.

    Attributes:
        status: the HTTP status (2xx).
        data: the ``data`` object (the run as it is now), or None for an empty body, as a
            permanent delete answers.
        request_id: the ``X-Request-Id`` response header.
    """

    status: int
    data: dict[str, Any] | None
    request_id: str | None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address.

    Other names ending in ``.localhost`` are not trusted: a resolver may send them elsewhere.
    """
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_base_url(url: str) -> str:
    """Check a Tallyfy API base URL and return it in canonical form.

    ``https://go.tallyfy.com/api`` and ``https://api.tallyfy.com`` are both API roots;
    ``https://go.tallyfy.com`` gets its ``/api``; a trailing ``/`` is dropped.

    Raises:
        ConfigError: not an http(s) URL with a host, a query or credentials in it, or
            plain ``http://`` to a host that is not loopback (the token would travel in
            clear text).
    """
    text = url.strip()
    example = f"use e.g. {DEFAULT_BASE_URL}"
    if not text:
        raise ConfigError(f"the base URL is empty; {example}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"the base URL is malformed ({exc}); {example}") from None
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        # Not echoed: the URL itself holds a secret.
        raise ConfigError(f"the base URL must not contain credentials; {example}")
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the base URL {text!r} is not an https:// URL with a host; {example}")
    if parts.query or parts.fragment:
        # Not echoed: a pasted query string may hold a token.
        raise ConfigError(f"the base URL must not have a query or fragment; {example}")
    host = parts.hostname.lower()
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"plain http:// is only allowed to a loopback host (localhost, 127.0.0.1, ::1): "
            f"the token would cross the network unencrypted; use https://{host}"
        )
    path = parts.path.rstrip("/")
    if host == "go.tallyfy.com" and not path:
        path = "/api"  # go.tallyfy.com serves the API under /api; api.tallyfy.com at /
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    result = f"{scheme}://{netloc}{path}"
    try:
        yarl.URL(result, encoded=True)
    except ValueError as exc:
        raise ConfigError(f"the base URL {text!r} is malformed ({exc}); {example}") from None
    return result


def server_key(base_url: str) -> str:
    """One name per server, whichever way its base URL is written.

    The URL is normalised as the client does it (case, trailing ``/``, ``go.tallyfy.com``
    without ``/api``), a port that is the scheme's default is dropped, and
    ``https://api.tallyfy.com`` becomes ``https://go.tallyfy.com/api``: Tallyfy serves
    one API at both, under one rate limit.

    Raises:
        ConfigError: a base URL the client would refuse.
    """
    url = normalise_base_url(base_url)
    parts = urlsplit(url)
    if parts.port is not None and _DEFAULT_PORTS.get(parts.scheme) == parts.port:
        host = parts.netloc.rsplit(":", 1)[0]
        url = f"{parts.scheme}://{host}{parts.path}"
    return DEFAULT_BASE_URL if url == _TALLYFY_ROOT_API else url


def _query(params: Sequence[tuple[str, str]]) -> str:
    # Spaces as %20 and "+" as %2B: Tallyfy does not read "+" as a space.
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


def _snippet(payload: bytes) -> str:
    text = payload[:200].decode("utf-8", "replace")
    return text + ("…" if len(payload) > 200 else "")


def _error_message(
    status: int, reason: str | None, content_type: str, payload: bytes
) -> tuple[str, dict[str, list[str]] | None]:
    """The message and field errors to report for an error response's body."""
    label = reason or f"HTTP {status}"
    if not payload.strip():
        return f"{label}, with an empty body", None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        kind = content_type or "no content type"
        return f"{label}, with a non-JSON body ({kind}, {len(payload)} bytes)", None
    if not isinstance(body, dict):
        return f"{label}: {_snippet(payload)}", None
    message = label
    for key in ("message", "error"):  # {"error": true, "message": …} or {"error": "…"}
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            message = value.strip()[:_MESSAGE_LIMIT]
            break
    code = body.get("code")
    if isinstance(code, str) and code:
        message += f" ({code})"
    errors = None
    raw_errors = body.get("errors")
    if isinstance(raw_errors, dict):
        errors = {
            str(field): [str(m) for m in msgs] if isinstance(msgs, list) else [str(msgs)]
            for field, msgs in raw_errors.items()
        }
    return message, errors


class Client:
    """An async client for one organisation's runs.

    ``async with Client(org=..., token=...) as client: ...`` (or call :meth:`aclose`).

    Args:
        org: the Tallyfy organisation ID.
        token: the access token (sent as ``Authorization: Bearer``; never shown).
        base_url: the API root; see :func:`normalise_base_url`.
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
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1 (got {concurrency})")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds (got {value})")
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
        query = _query([*params, ("page", str(page)), ("per_page", str(per_page))])
        status, headers, payload = await self._send("GET", self._runs_path, query=query)
        request_id = headers.get("X-Request-Id")
        body = self._decode(status, headers, payload)
        meta = body.get("meta") if isinstance(body, dict) else None
        pagination = meta.get("pagination") if isinstance(meta, dict) else None
        data = body.get("data") if isinstance(body, dict) else None
        total = pagination.get("total") if isinstance(pagination, dict) else None
        if (
            not isinstance(data, list)
            or not all(isinstance(run, dict) for run in data)
            or not isinstance(total, int)
            or isinstance(total, bool)
            or total < 0
        ):
            raise self._unexpected(status, "a run list", payload, request_id)
        return Page(data, total, per_page, page, request_id)

    async def archive(self, run_id: str) -> Reply:
        """Archive a run: ``DELETE /organizations/{org}/runs/{id}``."""
        return await self._mutate("DELETE", self._run_path(run_id))

    async def activate(self, run_id: str) -> Reply:
        """Restore an archived run: ``PUT /organizations/{org}/runs/{id}/activate``."""
        return await self._mutate("PUT", self._run_path(run_id) + "/activate")

    async def update(self, run_id: str, fields: Mapping[str, Any]) -> Reply:
        """Change some fields of a run: ``PUT /organizations/{org}/runs/{id}``."""
        body = orjson.dumps(dict(fields))
        return await self._mutate("PUT", self._run_path(run_id), body=body)

    async def delete(self, run_id: str) -> Reply:
        """Permanently delete an archived run: ``DELETE …/runs/{id}/delete``.

        Tallyfy answers 200 with an empty body: the reply's ``data`` is None.
        """
        return await self._mutate("DELETE", self._run_path(run_id) + "/delete")

    # --- plumbing ---

    def _run_path(self, run_id: str) -> str:
        return f"{self._runs_path}/{quote(run_id, safe='')}"

    async def _mutate(self, method: str, url: str, *, body: bytes | None = None) -> Reply:
        status, headers, payload = await self._send(method, url, body=body)
        request_id = headers.get("X-Request-Id")
        parsed = self._decode(status, headers, payload)
        if parsed is None:
            return Reply(status, None, request_id)
        data = parsed.get("data") if isinstance(parsed, dict) else None
        if not isinstance(data, dict):
            raise self._unexpected(status, 'a {"data": {…}} object', payload, request_id)
        return Reply(status, data, request_id)

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

    def _decode(self, status: int, headers: CIMultiDictProxy[str], payload: bytes) -> Any:
        """The parsed body of a 2xx answer (None when empty); an APIError otherwise."""
        request_id = headers.get("X-Request-Id")
        if not 200 <= status < 300:
            if 300 <= status < 400:
                location = headers.get("Location", "nowhere")
                raise api_error(
                    status,
                    f"redirected to {location}: check the base URL",
                    request_id=request_id,
                )
            message, errors = _error_message(
                status, self._reason(status), headers.get("Content-Type", ""), payload
            )
            raise api_error(
                status,
                message,
                errors=errors,
                request_id=request_id,
                retry_after=parse_retry_after(headers.get("Retry-After")),
            )
        if not payload.strip():
            return None
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise self._unexpected(status, "JSON", payload, request_id) from None

    @staticmethod
    def _reason(status: int) -> str | None:
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return None

    @staticmethod
    def _unexpected(status: int, wanted: str, payload: bytes, request_id: str | None) -> APIError:
        return ServerError(
            status,
            f"unexpected response: expected {wanted}, got {_snippet(payload)!r}",
            request_id=request_id,
        )
