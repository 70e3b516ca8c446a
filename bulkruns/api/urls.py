"""Where Tallyfy's API is, in one canonical spelling, how a query is written, and which
proxy (if any) the way there goes through.

No I/O here: the client, the lock and the result log all name a server the same way.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import yarl

from bulkruns.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "Proxy",
    "encode_query",
    "is_loopback_host",
    "normalise_base_url",
    "proxy_for",
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
    if parts.query or parts.fragment:
        # Not echoed: a pasted query string may hold a token.
        raise ConfigError(f"the base URL must not have a query or fragment; {example}")
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the base URL {text!r} is not an https:// URL with a host; {example}")
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


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy that opens tunnels (``CONNECT``) to the API.

    Attributes:
        url: ``http://host:port`` (or ``https://``), without credentials.
        authorization: the ``Proxy-Authorization`` header value, when the proxy URL held a
            user name; never shown (left out of repr).
    """

    url: str
    authorization: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """``host:port``, as messages show the proxy (never its credentials)."""
        return self.url.split("://", 1)[1]


def _setting(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """A variable's name and value, the lowercase spelling first (as curl and Python read
    them), or None when neither is set to something."""
    for key in (name.lower(), name.upper()):
        value = environ.get(key, "").strip()
        if value:
            return key, value
    return None


def _read_proxy(variable: str, text: str) -> Proxy:
    """A proxy URL as ``HTTPS_PROXY`` gives it; ``host:port`` alone means ``http://``."""
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        port = parts.port
    except ValueError:
        raise ConfigError(f"{variable} is not a proxy URL such as http://proxy:3128") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        # Only the scheme is echoed: the rest may hold a password.
        raise ConfigError(
            f"{variable} names a {scheme}:// proxy; bulkruns goes through http:// or https:// "
            "proxies (HTTP CONNECT) only"
        )
    if not parts.hostname:
        raise ConfigError(f"{variable} is not a proxy URL such as http://proxy:3128")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port if port is not None else _DEFAULT_PORTS[scheme]}"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(f"{scheme}://{netloc}", authorization)


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` lets ``host:port`` be reached without the proxy.

    Entries are separated by commas: ``*`` (every host), a domain (``example.com``,
    ``.example.com`` or ``*.example.com``: it and its subdomains), an IP address or a CIDR
    block (``10.0.0.0/8``), each optionally with ``:port``.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, want_port = entry, None
        if entry.startswith("[") and "]" in entry:  # [::1]:8443
            name, _, rest = entry[1:].partition("]")
            want_port = rest[1:] or None
        elif entry.count(":") == 1:
            name, want_port = entry.split(":")
        if want_port is not None and want_port != str(port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.removeprefix("*").removeprefix(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(base_url: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy requests to ``base_url`` go through, as the environment says, or None.

    ``HTTPS_PROXY`` (or ``https_proxy``) names the proxy, and ``NO_PROXY`` (or
    ``no_proxy``) the hosts reached without it. A loopback host never goes through a
    proxy (it would be the proxy's own machine), and neither does plain ``http://``, which
    is for loopback hosts only: through a proxy, the token would cross the network
    unencrypted. Over ``https://`` the proxy opens a tunnel and sees only ``host:port``.

    Raises:
        ConfigError: the proxy variable is not an http:// or https:// URL, or the base
            URL is one the client refuses.
    """
    parts = urlsplit(normalise_base_url(base_url))
    host = parts.hostname or ""
    if parts.scheme != "https" or is_loopback_host(host):
        return None
    setting = _setting(environ, "https_proxy")
    if setting is None:
        return None
    no_proxy = _setting(environ, "no_proxy")
    port = parts.port or _DEFAULT_PORTS["https"]
    if no_proxy is not None and _bypassed(host, port, no_proxy[1]):
        return None
    return _read_proxy(*setting)
