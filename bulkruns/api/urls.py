"""Where Tallyfy's API is, in one canonical spelling, and how a query is written.

No I/O here: the client, the lock and the result log all name a server the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

import yarl

from bulkruns.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "encode_query",
    "is_loopback_host",
    "normalise_base_url",
    "server_key",
]

DEFAULT_BASE_URL = "https://go.tallyfy.com/api"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TALLYFY_ROOT_API = "https://api.tallyfy.com"  # the same API as DEFAULT_BASE_URL, at /


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


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    """A query string with spaces as ``%20`` and ``+`` as ``%2B``: Tallyfy does not read
    ``+`` as a space."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
