"""The sandbox's rate limits, in every shape Tallyfy's might have.

The limiter is pure and runs on a fake clock here; a few tests then show, over real HTTP,
what a client sees: the headers, the edge proxy's HTML page, the GET budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import yarl
from click.testing import CliRunner
from multidict import CIMultiDictProxy

from bulkruns.api import Client
from bulkruns.cli import main
from bulkruns.errors import RateLimited
from bulkruns.sandbox import Limit, Sandbox, SandboxConfig
from bulkruns.sandbox.limits import RateLimiter
from bulkruns.sandbox.shape import HOURLY_MESSAGE, TOO_MANY_ATTEMPTS

pytestmark = pytest.mark.anyio


class FakeClock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(*specs: str, cotenant: float = 0.0, clock: FakeClock | None = None) -> RateLimiter:
    limits = [Limit.parse(spec) for spec in specs]
    return RateLimiter(limits, cotenant=cotenant, clock=clock or FakeClock())


def statuses(limits: RateLimiter, method: str, count: int) -> list[bool]:
    return [limits.check("t", method).allowed for _ in range(count)]


# --- limits and their specs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("600/60s", Limit(requests=600, seconds=60.0)),
        ("12/5s get", Limit(requests=12, seconds=5.0, gets_only=True)),
        ("1000/1h fixed hourly", Limit(requests=1000, seconds=3600.0, kind="fixed", hourly=True)),
        ("100/1min rolling", Limit(requests=100, seconds=60.0)),
        ("5/90", Limit(requests=5, seconds=90.0)),
        (
            "140/10s html no-retry-after quiet",
            Limit(requests=140, seconds=10.0, html=True, retry_after=False, headers=False),
        ),
        (
            "30/1s penalty=2.5 name=burst",
            Limit(requests=30, seconds=1.0, penalty=2.5, name="burst"),
        ),
    ],
)
def test_a_spec_reads_into_a_limit_and_back(spec: str, expected: Limit) -> None:
    limit = Limit.parse(spec)
    assert limit == expected
    assert Limit.parse(limit.spec()) == limit
    assert limit.label == (limit.name or limit.spec())


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "REQUESTS/DURATION"),
        ("600", "REQUESTS/DURATION"),
        ("600/60x", "REQUESTS/DURATION"),
        ("0/60s", "at least 1"),
        ("600/0s", "positive"),
        ("600/60s sometimes", "'sometimes' is not a word a limit takes; it takes: rolling, fixed"),
        ("600/60s penalty=soon", "penalty=soon is not a number of seconds"),
        ("600/60s penalty=inf", "penalty must be 0 or more"),
        ("600/60s rolling fixed", "both rolling and fixed"),
        ("600/60s name=", "'name=' is not a word"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Limit.parse(spec)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"requests": True}, "a whole number, not True"),
        ({"requests": 2.5}, "a whole number, not 2.5"),
        ({"seconds": float("inf")}, "seconds must be a positive number"),
        ({"kind": "sliding"}, "'rolling' or 'fixed', not 'sliding'"),
        ({"name": "my limit"}, "one word, not 'my limit'"),
    ],
)
def test_a_limit_is_checked_on_construction(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Limit(**{"requests": 10, "seconds": 1.0, **settings})


def test_the_default_limits_are_the_rolling_window_and_todays_burst_rule() -> None:
    burst = Limit(requests=30, seconds=1.0, penalty=3.0, headers=False, name="burst")
    assert SandboxConfig().rate_limits == (Limit(requests=600, seconds=60.0), burst)
    get_budget = Limit.parse("12/5s get")
    assert SandboxConfig(limits=(get_budget,)).rate_limits[2:] == (get_budget,)
    assert SandboxConfig(rate_limit=0, limits=(get_budget,)).rate_limits == (get_budget,)
    assert SandboxConfig(rate_limit=0).rate_limits == ()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"limits": [Limit.parse("12/5s get")]}, "a tuple of Limit objects"),
        ({"limits": ("12/5s get",)}, "a tuple of Limit objects"),
        ({"cotenant": -1.0}, "cotenant must be 0 or more"),
        ({"cotenant": float("nan")}, "cotenant must be 0 or more"),
        ({"limits": (Limit.parse("600/60s"),)}, "600/1min is there twice"),
    ],
)
def test_config_refuses_bad_limits(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SandboxConfig(**settings)


# --- rolling windows -------------------------------------------------------------------------


def test_rolling_window_counts_accepted_requests_only() -> None:
    clock = FakeClock()
    limits = limiter("3/10s", clock=clock)
    for expected_remaining in (2, 1, 0):
        verdict = limits.check("t", "GET")
        assert verdict.allowed
        assert (verdict.limit, verdict.remaining) == (3, expected_remaining)
        clock.now += 1.0
    refused = limits.check("t", "GET")  # at t=3: the first request leaves the window at t=10
    assert not refused.allowed
    assert refused.retry_after == 7
    assert refused.reset == 1010
    assert refused.refused_by == "3/10s"
    for _ in range(5):  # refusals are not counted: they do not extend the wait
        assert not limits.check("t", "GET").allowed
    clock.now = 1010.0
    assert limits.check("t", "GET").allowed
    assert limits.check("other", "GET").remaining == 2  # per token


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    clock = FakeClock()
    limits = limiter("1/0.25s", clock=clock)
    assert limits.check("t", "GET").allowed
    clock.now += 0.1
    assert limits.check("t", "GET").retry_after == 1


def test_several_windows_must_all_have_room_and_the_longest_wait_is_told() -> None:
    clock = FakeClock(0.0)
    limits = limiter("3/10s", "5/60s", clock=clock)

    def at(now: float) -> tuple[bool, int, str]:
        clock.now = now
        verdict = limits.check("t", "PUT")
        return verdict.allowed, verdict.retry_after, verdict.refused_by

    assert [at(t)[0] for t in (0.0, 1.0, 2.0)] == [True] * 3
    assert at(3.0) == (False, 7, "3/10s")  # the short window is full, the long one is not
    assert at(10.0)[0]  # the short window rolled on...
    assert at(11.0)[0]  # ...and that makes 5 in the last minute
    assert at(11.5) == (False, 49, "5/1min")  # both full: the longer wait is the answer
    assert at(12.0) == (False, 48, "5/1min")  # the short window has room, the long one not
    assert at(60.0)[0]  # the three refusals counted on neither window
    assert limits.refused == {"3/10s": 1, "5/1min": 2}


def test_an_even_pace_just_under_the_default_limit_is_never_refused() -> None:
    clock = FakeClock()
    limits = RateLimiter.from_config(SandboxConfig(), clock=clock)
    for _ in range(1800):
        assert limits.check("t", "PUT").allowed
        clock.now += 0.101


def test_no_limit_when_rate_limit_is_zero_and_no_limits() -> None:
    limits = RateLimiter.from_config(SandboxConfig(rate_limit=0), clock=FakeClock())
    verdicts = [limits.check("t", "GET") for _ in range(100)]
    assert all(verdict.allowed and not verdict.headers() for verdict in verdicts)


# --- penalties ---------------------------------------------------------------------------------


def test_todays_burst_rule_earns_a_penalty_of_refusals() -> None:
    clock = FakeClock()
    config = SandboxConfig(rate_limit=1000, burst_limit=4, burst_penalty=3.0)
    limits = RateLimiter.from_config(config, clock=clock)
    for _ in range(4):
        assert limits.check("t", "GET").allowed
        clock.now += 0.2
    punished = limits.check("t", "GET")  # the fifth within one second
    assert not punished.allowed
    assert (punished.refused_by, punished.retry_after) == ("burst", 3)
    # The burst rule sends no headers of its own: the rolling window speaks for the answer.
    assert punished.headers() == {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "996",
        "Retry-After": "3",
    }
    clock.now += 2.5
    during = limits.check("t", "GET")  # the window has room again, but the penalty holds
    assert (during.allowed, during.refused_by, during.retry_after) == (False, "burst penalty", 1)
    clock.now += 0.6
    assert limits.check("t", "GET").allowed  # refusals in the penalty did not extend it
    assert limits.refused == {"burst": 1, "burst penalty": 1}


def test_a_penalty_refuses_every_request_of_the_token_for_a_while() -> None:
    clock = FakeClock(0.0)
    limits = limiter("1/10s get penalty=2", clock=clock)
    assert limits.check("t", "GET").allowed
    tripped = limits.check("t", "GET")
    assert (tripped.allowed, tripped.refused_by, tripped.retry_after) == (
        False,
        "1/10s get penalty=2",
        10,
    )
    clock.now = 1.0
    put = limits.check("t", "PUT")  # a GET budget's penalty holds back writes too
    assert (put.allowed, put.penalty, put.retry_after, put.reset) == (False, True, 1, 2)
    assert limits.check("other", "PUT").allowed  # another token's budget is its own
    clock.now = 2.0
    assert limits.check("t", "PUT").allowed
    assert not limits.check("t", "GET").allowed  # the GET window is still full: a new penalty
    clock.now = 3.0
    assert not limits.check("t", "DELETE").allowed


# --- fixed windows and headers --------------------------------------------------------------


def test_a_fixed_window_resets_all_at_once_on_its_boundaries() -> None:
    clock = FakeClock(1000.0)  # in the window [960, 1020)
    limits = limiter("3/60s fixed", clock=clock)
    remaining = []
    for _ in range(3):
        verdict = limits.check("t", "GET")
        remaining.append(verdict.headers())
        clock.now += 1.0
    assert remaining == [
        {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": str(left)} for left in (2, 1, 0)
    ]
    clock.now = 1019.5
    refused = limits.check("t", "GET")
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "Retry-After": "1",
        "X-RateLimit-Reset": "1020",
    }
    clock.now = 1020.0  # a new window: all three at once, where a rolling one would wait
    assert statuses(limits, "GET", 4) == [True, True, True, False]
    assert limits.check("t", "GET").headers()["X-RateLimit-Reset"] == "1080"


def test_the_limit_with_the_fewest_left_announces_itself_unless_quiet() -> None:
    limits = limiter("10/60s", "4/10s", "2/1s quiet")
    first = limits.check("t", "GET")
    assert (first.limit, first.remaining) == (4, 3)
    second = limits.check("t", "GET")
    assert (second.limit, second.remaining) == (4, 2)
    refused = limits.check("t", "GET")  # the quiet limit refuses: the others still speak
    assert refused.refused_by == "2/1s quiet"
    assert refused.headers() == {
        "X-RateLimit-Limit": "4",
        "X-RateLimit-Remaining": "2",
        "Retry-After": "1",
    }
    silent = limiter("1/1s quiet no-retry-after")
    assert silent.check("t", "GET").headers() == {}
    assert silent.check("t", "GET").headers() == {}  # refused, and says nothing at all


def test_an_edge_proxys_429_carries_only_its_own_headers() -> None:
    limits = limiter("100/60s", "1/10s html")
    assert limits.check("t", "GET").headers()["X-RateLimit-Limit"] == "1"  # fewest left
    refused = limits.check("t", "GET")
    assert refused.rule is not None
    assert refused.rule.html
    assert refused.headers() == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "Retry-After": "10",
        "X-RateLimit-Reset": "1010",
    }
    quiet = limiter("100/60s", "1/10s html quiet")
    quiet.check("t", "GET")
    assert quiet.check("t", "GET").headers() == {"Retry-After": "10"}  # not the API's limit


def test_a_get_budget_refuses_reads_only() -> None:
    clock = FakeClock()
    limits = limiter("600/60s", "2/5s get", clock=clock)
    assert statuses(limits, "GET", 2) == [True, True]
    read = limits.check("t", "GET")
    assert (read.allowed, read.refused_by, read.retry_after) == (False, "2/5s get", 5)
    write = limits.check("t", "DELETE")  # passes the GET budget, uncounted
    assert write.allowed
    assert (write.limit, write.remaining) == (600, 597)  # the refused GET did not count
    clock.now += 5.0
    assert limits.check("t", "GET").allowed


def test_an_hourly_cap_answers_with_tallyfys_message_and_a_long_wait() -> None:
    limits = limiter("3/1h fixed hourly name=org")  # at 1000 s: the hour ends at 3600
    assert statuses(limits, "PUT", 3) == [True, True, True]
    capped = limits.check("t", "PUT")
    assert capped.rule is not None
    assert capped.rule.message == HOURLY_MESSAGE
    assert HOURLY_MESSAGE.startswith("You've reached the hourly limit")
    assert (capped.refused_by, capped.retry_after, capped.reset) == ("org", 2600, 3600)
    assert limiter("1/1s").check("t", "GET").rule is None
    assert Limit.parse("1/1s").message == TOO_MANY_ATTEMPTS


# --- another client on the same budget ----------------------------------------------------------


def test_a_cotenant_takes_its_share_evenly_and_the_client_gets_what_is_left() -> None:
    clock = FakeClock()
    limits = limiter("60/60s", cotenant=0.5, clock=clock)  # one request every 2 s
    clock.now += 60.0
    first = limits.check("t", "PUT")
    assert (first.allowed, first.remaining) == (True, 29)  # 30 were the co-tenant's
    assert statuses(limits, "PUT", 30) == [True] * 29 + [False]
    assert limits.cotenant_requests == 30
    clock.now += 2.5  # the co-tenant's oldest slot freed at +2 s: it took it again
    assert not limits.check("t", "PUT").allowed
    assert limits.cotenant_requests == 31
    # Long after, only the last window's worth of its requests still counts.
    clock.now += 100_000.0
    assert limits.check("t", "PUT").remaining == 29


def test_a_cotenant_is_refused_like_anyone_and_its_refusals_do_not_count() -> None:
    clock = FakeClock()
    limits = limiter("3/10s", "1/1s penalty=5", cotenant=0.5, clock=clock)  # at +2 s, +4 s…
    assert statuses(limits, "PUT", 2) == [True, False]  # a penalty until +5 s
    clock.now += 6.5
    # Its requests at +2 and +4 s met the penalty; the one at +6 s took the slot.
    assert not limits.check("t", "PUT").allowed
    assert limits.cotenant_requests == 1


def test_a_cotenant_leaves_the_get_budget_alone() -> None:
    clock = FakeClock()
    limits = limiter("100/60s", "2/5s get", cotenant=10.0, clock=clock)
    clock.now += 5.0
    read = limits.check("t", "GET")
    assert (read.allowed, read.limit, read.remaining) == (True, 2, 1)
    write = limits.check("t", "PUT")
    assert (write.limit, write.remaining) == (100, 100 - 50 - 2)


# --- over HTTP ------------------------------------------------------------------------------


def on_fake_clock(sandbox: Sandbox, now: float = 1000.0) -> FakeClock:
    """Put the sandbox's limiter on a fake clock, so that its windows never move."""
    clock = FakeClock(now)
    sandbox.state.limiter = RateLimiter.from_config(sandbox.config, clock=clock)
    return clock


async def raw_get(sandbox: Sandbox) -> tuple[int, str, CIMultiDictProxy[str]]:
    """One list request with Tallyfy's headers: status, body text, and headers."""
    url = yarl.URL(f"{sandbox.base_url}/organizations/{sandbox.org}/runs")
    headers = {"Authorization": f"Bearer {sandbox.token}", "X-Tallyfy-Client": "APIClient"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers


async def test_a_fixed_windows_headers_over_http(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Client]
) -> None:
    async with make_sandbox(limits=(Limit.parse("2/1h fixed"),)) as sandbox:
        on_fake_clock(sandbox)
        answers = [await raw_get(sandbox) for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 429]
        assert [h["X-RateLimit-Remaining"] for _, _, h in answers] == ["1", "0", "0"]
        assert {h["X-RateLimit-Limit"] for _, _, h in answers} == {"2"}
        _, body, headers = answers[2]
        assert body == f'{{"message":"{TOO_MANY_ATTEMPTS}","code":"RATE_LIMIT_EXCEEDED"}}'
        assert headers["Retry-After"] == "2600"
        assert headers["X-RateLimit-Reset"] == "3600"
        assert headers["X-Request-Id"]
        async with make_client(sandbox) as client:
            with pytest.raises(RateLimited) as refused:
                await client.list_runs([])
        assert refused.value.retry_after == 2600.0
        assert TOO_MANY_ATTEMPTS in str(refused.value)


@pytest.mark.parametrize(
    ("spec", "retry_after"), [("1/1h html", "3600"), ("1/1h html quiet no-retry-after", None)]
)
async def test_an_edge_proxy_answers_429_with_an_html_page(
    make_sandbox: Callable[..., Sandbox],
    make_client: Callable[..., Client],
    spec: str,
    retry_after: str | None,
) -> None:
    async with make_sandbox(limits=(Limit.parse(spec),)) as sandbox:
        on_fake_clock(sandbox)
        assert (await raw_get(sandbox))[0] == 200
        status, body, headers = await raw_get(sandbox)
        assert status == 429
        assert headers["Content-Type"].startswith("text/html")
        assert "You are being rate limited" in body
        assert headers.get("Retry-After") == retry_after
        assert headers["CF-RAY"]
        assert "X-Request-Id" not in headers  # the API never saw it
        async with make_client(sandbox) as client:
            with pytest.raises(RateLimited) as refused:
                await client.list_runs([])
        assert "non-JSON body (text/html" in str(refused.value)
        assert refused.value.retry_after == (None if retry_after is None else 3600.0)


async def test_a_get_budget_over_http_holds_back_lists_not_changes(
    make_sandbox: Callable[..., Sandbox], make_client: Callable[..., Client]
) -> None:
    async with make_sandbox(limits=(Limit.parse("2/1h get"),)) as sandbox:
        on_fake_clock(sandbox)
        async with make_client(sandbox) as client:
            page = await client.list_runs([("status", "active")])
            await client.list_runs([])
            with pytest.raises(RateLimited):
                await client.list_runs([])
            reply = await client.archive(page.runs[0]["id"])
        assert reply.status == 200
        stats = sandbox.state.stats()
        assert stats["throttled"] == 1
        assert stats["throttled_by"] == {"2/1h get": 1}
        assert stats["limits"] == ["2/1h get"]
        assert stats["cotenant_requests"] == 0
        assert stats["requests"]["archive"] == {"200": 1}


# --- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--limit", "12/5x"], "Invalid value for '--limit': '12/5x' is not REQUESTS/DURATION"),
        (["--limit", "12/5s twice"], "'twice' is not a word a limit takes"),
        (["--limit", "600/60s"], "--limit must not repeat a limit: 600/1min is there twice"),
        (["--cotenant", "-1"], "--cotenant must be 0 or more requests per second"),
        (["--window", "0"], "--window must be a positive number of seconds"),
        (["--stall", "1.5"], "--stall must be a share between 0 and 1"),
        (["--latency", "-5"], "'--latency'"),
    ],
)
def test_sandbox_command_errors_name_its_flags(flags: list[str], says: str) -> None:
    result = CliRunner().invoke(main, ["sandbox", "--port", "0", *flags])
    assert result.exit_code == 2
    assert says in result.output
    assert "_" not in result.output.split("(see:")[0]  # no field name of the config
    assert "Traceback" not in result.output
