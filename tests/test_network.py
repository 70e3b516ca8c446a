"""Corporate networks: a CA bundle of one's own, and an HTTPS proxy (``HTTPS_PROXY``,
``NO_PROXY``), against a sandbox served over TLS with a test CA's certificate, through a
local CONNECT proxy that records what it sees."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from net_support import ConnectProxy, Tls, make_tls

from bulkruns.api import Client
from bulkruns.api.urls import Proxy, proxy_for
from bulkruns.errors import ConfigError, TransportError
from bulkruns.sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.anyio

TOKEN = "tok-NETWORK-SECRET-8c1d2e3f4a5b"
# A name only the proxy can resolve: the client never looks it up itself.
REMOTE = "tallyfy.test"


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path, REMOTE, "127.0.0.1", "localhost")


@pytest.fixture
async def tls_sandbox(tls: Tls) -> AsyncIterator[Sandbox]:
    config = SandboxConfig(runs=30, rate_limit=0, token=TOKEN)
    async with Sandbox(config, ssl_context=tls.server) as sandbox:
        yield sandbox


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment without proxy settings, which a test then sets as it needs."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def client_for(sandbox: Sandbox, host: str = "127.0.0.1", **kwargs: object) -> Client:
    url = f"https://{host}:{sandbox.port}/api"
    return Client(org=sandbox.org, token=TOKEN, base_url=url, **kwargs)  # type: ignore[arg-type]


# --- the CA bundle -------------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_env")
async def test_a_self_signed_server_is_refused_without_its_ca(tls_sandbox: Sandbox) -> None:
    async with client_for(tls_sandbox) as client:
        with pytest.raises(TransportError) as caught:
            await client.list_runs([])
    message = str(caught.value)
    assert caught.value.sent is False
    assert message.startswith(f"list page 1: the TLS certificate of 127.0.0.1:{tls_sandbox.port}")
    assert "not trusted" in message
    assert "--ca-file or SSL_CERT_FILE" in message
    assert tls_sandbox.state.count("list") == 0


@pytest.mark.usefixtures("no_proxy_env")
async def test_a_ca_file_makes_the_server_trusted(tls: Tls, tls_sandbox: Sandbox) -> None:
    async with client_for(tls_sandbox, ca_file=tls.ca_file) as client:
        page = await client.list_runs([("status", "active")])
        reply = await client.archive(page.runs[0]["id"])
    assert reply.status == 200
    assert tls_sandbox.root_url.startswith("https://")


@pytest.mark.usefixtures("no_proxy_env")
async def test_tls_is_still_verified_with_a_ca_file(tmp_path: Path) -> None:
    # the CA is trusted, but the certificate names another host: refused all the same
    other = make_tls(tmp_path, "elsewhere.test")
    config = SandboxConfig(runs=1, rate_limit=0, token=TOKEN)
    async with (
        Sandbox(config, ssl_context=other.server) as sandbox,
        client_for(sandbox, ca_file=other.ca_file) as client,
    ):
        with pytest.raises(TransportError, match="not trusted") as caught:
            await client.list_runs([])
    assert "127.0.0.1" in str(caught.value)


def test_a_ca_file_must_hold_pem_certificates(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"junk\.pem .* holds no PEM certificate"):
        Client(org="o", token="t", ca_file=junk)
    with pytest.raises(ConfigError, match=r"cannot read the CA file .*missing\.pem"):
        Client(org="o", token="t", ca_file=tmp_path / "missing.pem")


# --- the proxy ----------------------------------------------------------------------------


async def test_https_goes_through_the_proxy_which_sees_only_host_and_port(
    tls: Tls, tls_sandbox: Sandbox, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await ConnectProxy(tls_sandbox.port).start()
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    no_proxy_env.setenv("NO_PROXY", "localhost,.internal.example")
    try:
        async with client_for(tls_sandbox, REMOTE, ca_file=tls.ca_file) as client:
            page = await client.list_runs([("status", "active")])
            await client.archive(page.runs[0]["id"])
    finally:
        await proxy.close()
    assert page.runs
    assert proxy.requests
    for line, headers in proxy.requests:
        assert line == f"CONNECT {REMOTE}:{tls_sandbox.port} HTTP/1.1"
        assert "Authorization" not in headers
        assert TOKEN not in line + repr(headers)
    # what went through the tunnel was encrypted: no path, no token
    assert TOKEN.encode() not in proxy.tunnelled
    assert b"/organizations/" not in proxy.tunnelled
    assert tls_sandbox.state.count("archive") == 1


async def test_proxy_credentials_are_sent_to_the_proxy_and_never_shown(
    tls: Tls, tls_sandbox: Sandbox, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await ConnectProxy(tls_sandbox.port, refuse=407).start()
    no_proxy_env.setenv("https_proxy", f"http://alice:pa%24%24word@127.0.0.1:{proxy.port}")
    try:
        client = client_for(tls_sandbox, REMOTE, ca_file=tls.ca_file)
        async with client:
            with pytest.raises(TransportError) as caught:
                await client.list_runs([])
    finally:
        await proxy.close()
    _, headers = proxy.requests[0]
    assert headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"alice:pa$$word").decode()
    message = str(caught.value)
    assert message == (
        f"list page 1: the proxy 127.0.0.1:{proxy.port} refused a tunnel to "
        f"{REMOTE}:{tls_sandbox.port} (HTTP 407 Refused); check HTTPS_PROXY and NO_PROXY"
    )
    assert caught.value.sent is False
    for shown in (message, repr(client), repr(client.proxy)):
        assert "pa$$word" not in shown
        assert "pa%24%24word" not in shown
        assert "alice" not in shown


async def test_a_proxy_that_is_down_is_named(
    tls: Tls, tls_sandbox: Sandbox, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await ConnectProxy(tls_sandbox.port).start()
    await proxy.close()  # its port is now closed
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    async with client_for(tls_sandbox, REMOTE, ca_file=tls.ca_file) as client:
        with pytest.raises(
            TransportError, match=f"cannot connect to the proxy 127.0.0.1:{proxy.port}"
        ):
            await client.archive("a" * 32)


async def test_loopback_and_plain_http_never_go_through_a_proxy(
    tls: Tls, tls_sandbox: Sandbox, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await ConnectProxy(tls_sandbox.port).start()
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        no_proxy_env.setenv(name, proxy.url)
    plain = Sandbox(SandboxConfig(runs=3, rate_limit=0, token=TOKEN))
    try:
        async with plain:
            direct = Client(org=plain.org, token=TOKEN, base_url=plain.base_url)
            async with direct, client_for(tls_sandbox, ca_file=tls.ca_file) as looped:
                assert direct.proxy is None
                assert looped.proxy is None
                await direct.list_runs([])
                await looped.list_runs([])
    finally:
        await proxy.close()
    assert proxy.requests == []


def test_a_client_can_ignore_the_environment(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert Client(org="o", token="t").proxy == Proxy("http://proxy.example:3128")
    assert Client(org="o", token="t", trust_env=False).proxy is None


# --- which proxy, if any (no I/O) ------------------------------------------------------------

API = "https://go.tallyfy.com/api"
PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        (API, {}, None),
        (API, {"HTTPS_PROXY": PROXY}, PROXY),
        (API, {"https_proxy": PROXY, "HTTPS_PROXY": "http://other:1"}, PROXY),
        (API, {"HTTPS_PROXY": "proxy.corp:3128"}, PROXY),
        (API, {"HTTPS_PROXY": "http://proxy.corp"}, "http://proxy.corp:80"),
        (API, {"HTTPS_PROXY": "https://Proxy.Corp"}, "https://proxy.corp:443"),
        (API, {"HTTP_PROXY": PROXY}, None),  # only https goes through a proxy
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "tallyfy.com"}, None),
        (API, {"HTTPS_PROXY": PROXY, "no_proxy": ".tallyfy.com"}, None),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "*.tallyfy.com"}, None),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "a.example, GO.TALLYFY.COM"}, None),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "go.tallyfy.com:443"}, None),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "go.tallyfy.com:8443"}, PROXY),
        (API, {"HTTPS_PROXY": PROXY, "NO_PROXY": "notallyfy.com,tallyfy.co"}, PROXY),
        ("https://10.1.2.3/api", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://10.1.2.3/api", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.1.2.3"}, None),
        ("https://10.1.2.3/api", {"HTTPS_PROXY": PROXY, "NO_PROXY": "192.168.0.0/16"}, PROXY),
        ("https://[fd00::5]:8443/api", {"HTTPS_PROXY": PROXY, "NO_PROXY": "[fd00::5]:8443"}, None),
        ("https://[fd00::5]/api", {"HTTPS_PROXY": PROXY, "NO_PROXY": "fd00::/8"}, None),
        ("https://127.0.0.1:8443/api", {"HTTPS_PROXY": PROXY}, None),
        ("https://localhost/api", {"HTTPS_PROXY": PROXY}, None),
        ("http://127.0.0.1:8765/api", {"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY}, None),
    ],
)
def test_the_proxy_a_base_url_goes_through(
    url: str, env: dict[str, str], expected: str | None
) -> None:
    proxy = proxy_for(url, env)
    assert (proxy.url if proxy is not None else None) == expected


def test_a_proxy_that_cannot_tunnel_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ConfigError, match="socks5:// proxy") as caught:
        proxy_for(API, {"HTTPS_PROXY": "socks5://bob:hunter2@proxy.corp:1080"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="HTTPS_PROXY is not a proxy URL"):
        proxy_for(API, {"HTTPS_PROXY": "http://proxy.corp:notaport"})
    with pytest.raises(ConfigError, match="https_proxy is not a proxy URL"):
        proxy_for(API, {"https_proxy": "http://"})
