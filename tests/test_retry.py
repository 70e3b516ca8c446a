from __future__ import annotations

import email.utils
import itertools
from collections.abc import Iterable
from typing import Any

import anyio
import pytest
from multidict import CIMultiDict
from simulator import VirtualLoop

from bulkruns.api import RateLimitInfo, Reply, parse_rate_limit, parse_retry_after
from bulkruns.api.answers import read_page, read_reply
from bulkruns.errors import (
    APIError,
    AuthError,
    ConfigError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
    WaitTooLong,
    api_error,
)
from bulkruns.pace import (
    Attempts,
    Pacer,
    RetryPolicy,
    outcome_unknown,
    retryable,
    send_paced,
    throttle_wait,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": VirtualLoop})  # a fake clock: waits take no time


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_retryable_statuses(status: int, expected: bool) -> None:
    assert retryable(api_error(status, "x")) is expected


def test_transport_errors_are_retryable_and_unknown_only_once_sent() -> None:
    assert retryable(TransportError("refused", sent=False))
    # a cause that will not pass by itself (a certificate not trusted) is not retried
    assert not retryable(TransportError("untrusted", sent=False, lasting=True))
    assert not outcome_unknown(TransportError("refused", sent=False))
    assert outcome_unknown(TransportError("reset", sent=True))
    assert outcome_unknown(ServerError(502, "bad gateway"))
    assert outcome_unknown(ServerError(200, "unexpected response: expected JSON"))
    assert not retryable(ServerError(200, "unexpected response: expected JSON"))
    assert not outcome_unknown(RateLimited(429, "slow down"))
    assert not outcome_unknown(NotFound(404, "gone"))


def test_api_error_picks_the_subclass_and_describes_itself() -> None:
    error = api_error(422, "invalid", errors={"name": ["too long"]}, request_id="r-1")
    assert isinstance(error, Unprocessable)
    assert str(error) == "HTTP 422: invalid (name: too long) [request r-1]"
    assert isinstance(api_error(401, "no"), AuthError)
    assert isinstance(api_error(599, "boom"), ServerError)
    assert type(api_error(418, "teapot")).__name__ == "APIError"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


# -- what the headers say about the limit ----------------------------------------------------


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({name.replace("_", "-"): value for name, value in values.items()})


def test_rate_limit_headers_are_read() -> None:
    given = headers(x_ratelimit_limit="600", x_ratelimit_remaining="12", x_ratelimit_reset="30")
    assert parse_rate_limit(given) == RateLimitInfo(600, 12, 30.0)
    # Laravel and GitHub send the reset as a Unix time
    epoch = headers(
        x_ratelimit_limit="100", x_ratelimit_remaining="0", x_ratelimit_reset="1700000030"
    )
    assert parse_rate_limit(epoch, now=1_700_000_000.0) == RateLimitInfo(100, 0, 30.0)
    # or in milliseconds, which read as seconds would be a reset millennia away
    millis = headers(
        x_ratelimit_limit="100", x_ratelimit_remaining="0", x_ratelimit_reset="1700000030000"
    )
    assert parse_rate_limit(millis, now=1_700_000_000.0) == RateLimitInfo(100, 0, 30.0)
    assert parse_rate_limit(headers(x_ratelimit_remaining="5")) == RateLimitInfo(None, 5, None)


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"X-RateLimit-Reset": "30"},  # a reset alone says nothing about what is left
        {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-1"},
        {"X-RateLimit-Limit": "0", "X-RateLimit-Reset": "30"},  # a limit that allows nothing
    ],
)
def test_missing_or_unreadable_rate_limit_headers_are_none(given: dict[str, str]) -> None:
    assert parse_rate_limit(CIMultiDict(given)) is None


def test_answers_carry_their_rate_limit_headers() -> None:
    given = headers(x_ratelimit_limit="600", x_ratelimit_remaining="599")
    page = read_page(
        200, given, b'{"data":[],"meta":{"pagination":{"total":0}}}', page=1, per_page=100
    )
    assert page.rate_limit == RateLimitInfo(600, 599)
    assert read_reply(200, given, b"").rate_limit == RateLimitInfo(600, 599)
    assert Reply(200, None, None).rate_limit is None  # positional construction still works
    with pytest.raises(RateLimited) as caught:
        read_reply(429, headers(**given, retry_after="3"), b'{"message":"Too Many Attempts."}')
    assert caught.value.rate_limit == RateLimitInfo(600, 599)
    assert caught.value.retry_after == 3.0


def test_a_429_without_retry_after_waits_for_the_announced_reset() -> None:
    given = headers(x_ratelimit_limit="100", x_ratelimit_remaining="0", x_ratelimit_reset="12")
    with pytest.raises(RateLimited) as caught:
        read_reply(429, given, b"")
    assert caught.value.retry_after == 12.0


def test_an_edge_proxys_html_429_is_a_429() -> None:
    html = b"<html><body><h1>429 Too Many Requests</h1></body></html>"
    with pytest.raises(RateLimited) as caught:
        read_reply(429, headers(content_type="text/html"), html)
    assert caught.value.retry_after is None
    assert "non-JSON body (text/html" in caught.value.message


# -- the policy ------------------------------------------------------------------------------


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    top = RetryPolicy(base_delay=0.5, max_delay=4.0, random=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    bottom = RetryPolicy(random=lambda: 0.0)
    assert bottom.backoff(3) == 0.0


def test_next_delay_honours_retry_after_over_backoff_up_to_max_delay() -> None:
    policy = RetryPolicy(random=lambda: 0.5)
    assert policy.next_delay(ServerError(503, "x"), attempt=2, elapsed=0.0) == 0.5
    assert policy.next_delay(ServerError(503, "x", retry_after=7.0), attempt=1, elapsed=0) == 7.0
    assert policy.next_delay(ServerError(503, "x", retry_after=100.0), attempt=1, elapsed=0) == 30.0


def test_next_delay_is_bounded_by_attempts_and_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=10.0, random=lambda: 0.5)
    error = ServerError(500, "x")
    assert policy.next_delay(error, attempt=2, elapsed=0.0) is not None
    assert policy.next_delay(error, attempt=3, elapsed=0.0) is None
    assert policy.next_delay(error, attempt=1, elapsed=9.9) is None
    assert policy.next_delay(NotFound(404, "x"), attempt=1, elapsed=0.0) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimited(429, "Too Many Attempts.", retry_after=12.0), (12.0, "Retry-After 12 s")),
        (RateLimited(429, "slow down", retry_after=29.9994), (29.9994, "Retry-After 30 s")),
        (
            RateLimited(429, "Too Many Requests, with an empty body"),
            (None, "a 429 without Retry-After"),
        ),
        (
            RateLimited(429, "You've reached the hourly limit for API calls"),
            (3600.0, "the hourly limit"),
        ),
        (
            RateLimited(429, "You've reached the Hourly Limit", retry_after=95.0),
            (95.0, "the hourly limit"),
        ),
    ],
)
def test_throttle_wait_says_how_long_and_why(
    error: RateLimited, expected: tuple[float | None, str]
) -> None:
    assert throttle_wait(error) == expected


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="max_delay"):
        RetryPolicy(base_delay=5.0, max_delay=1.0)
    with pytest.raises(ConfigError, match="max_wait must be at least 0"):
        RetryPolicy(max_wait=-1.0)


# -- the paced send --------------------------------------------------------------------------


class Script:
    """A request that fails as scripted, then succeeds; it records when each attempt began."""

    def __init__(
        self, failures: Iterable[APIError | TransportError], *, takes: float = 0.0
    ) -> None:
        self.failures = list(failures)
        self.takes = takes
        self.calls: list[float] = []
        self.reply = Reply(200, None, "r-ok", RateLimitInfo(100, 40, 0.5))

    async def __call__(self) -> Reply:
        self.calls.append(anyio.current_time())
        await anyio.sleep(self.takes)
        if self.failures:
            raise self.failures.pop(0)
        return self.reply


def throttle(retry_after: float | None = 1.0, message: str = "Too Many Attempts.") -> RateLimited:
    return RateLimited(429, message, retry_after=retry_after)


async def test_429s_count_against_neither_attempts_nor_time() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    policy = RetryPolicy(max_attempts=2, max_elapsed=5.0)
    request = Script([throttle(30.0) for _ in range(6)])
    errors: list[tuple[type[BaseException], bool]] = []
    attempts = Attempts()
    reply = await send_paced(
        request,
        pacer,
        policy,
        attempts,
        lane="write",
        on_error=lambda exc, retrying: errors.append((type(exc), retrying)),
    )
    assert reply is request.reply
    assert attempts.count == 7  # every send, the six throttled among them
    assert errors == [(RateLimited, True)] * 6
    # each Retry-After honoured in full: three minutes, far past max_elapsed
    gaps = [b - a for a, b in itertools.pairwise(request.calls)]
    assert all(gap >= 30.0 for gap in gaps)


async def test_other_failures_keep_their_bounds_among_429s() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    policy = RetryPolicy(max_attempts=2, random=lambda: 0.0)
    request = Script(
        [throttle(), ServerError(503, "x"), throttle(), ServerError(503, "y"), throttle()]
    )
    with pytest.raises(ServerError, match="y"):
        await send_paced(request, pacer, policy, lane="write")
    assert len(request.calls) == 4  # the second 503 was the second failure: final


async def test_the_time_budget_counts_the_requests_own_tries_not_its_turns() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    policy = RetryPolicy(max_elapsed=2.0, random=lambda: 0.0)
    request = Script([ServerError(503, "x"), ServerError(503, "x")], takes=0.5)

    def on_error(error: APIError | TransportError, retrying: bool) -> None:
        # another request's 429 pauses the pool for a minute meanwhile
        pacer.throttled("write", 60.0)

    reply = await send_paced(request, pacer, policy, lane="write", on_error=on_error)
    assert reply is request.reply
    assert request.calls[-1] - request.calls[0] >= 120.0  # two pauses, not two failures


async def test_a_wait_past_max_wait_is_final_and_says_so() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    policy = RetryPolicy(max_wait=600.0)
    request = Script([throttle(3600.0)])
    retrying: list[bool] = []
    with pytest.raises(WaitTooLong) as caught:
        await send_paced(
            request, pacer, policy, lane="write", on_error=lambda e, r: retrying.append(r)
        )
    error = caught.value
    assert isinstance(error, RateLimited)
    assert (error.wait, error.reason, error.status) == (3600.0, "Retry-After 3600 s", 429)
    assert str(error) == (
        "HTTP 429: Tallyfy asks to wait 3,600 s (Retry-After 3600 s), longer than max_wait "
        "600 s; resume the job later"
    )
    assert retrying == [False]
    # the pause is shown, and holds every request
    pause = pacer.pause
    assert pause is not None
    assert pause.reason == "Retry-After 3600 s"
    assert pause.until == pytest.approx(anyio.current_time() + 3600.0)


async def test_the_hourly_limit_without_retry_after_is_final() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    request = Script([throttle(None, "You've reached the hourly limit of API calls.")])
    with pytest.raises(WaitTooLong, match=r"the hourly limit\), longer than max_wait"):
        await send_paced(request, pacer, RetryPolicy(max_wait=600), lane="write")
    assert pacer.pause is not None
    assert pacer.pause.reason == "the hourly limit"


async def test_an_edge_429_without_retry_after_is_retried_after_a_guess() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    html = b"<html><body>Too Many Requests</body></html>"

    def edge() -> RateLimited:
        try:
            read_reply(429, headers(content_type="text/html"), html)
        except RateLimited as error:
            return error
        raise AssertionError("a 429 is an error")  # pragma: no cover

    request = Script([edge(), edge(), edge()])
    await send_paced(request, pacer, RetryPolicy(max_attempts=1), lane="write")
    gaps = [b - a for a, b in itertools.pairwise(request.calls)]
    # one second, then two, then four: the pause doubles while 429s follow each other
    assert gaps == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(4.0)]


async def test_429s_with_nothing_let_through_end_once_they_add_up_to_max_wait() -> None:
    pacer = Pacer(10, clock=anyio.current_time)
    request = Script([throttle(3.0) for _ in range(100)])
    began = anyio.current_time()
    with pytest.raises(WaitTooLong, match=r"429 after 429, none let through\), longer than"):
        await send_paced(request, pacer, RetryPolicy(max_wait=20), lane="write")
    # every wait was short, but together they would hold the job past max_wait: it stops
    # at the 429 whose wait would take it there
    assert len(request.calls) > 3
    *_, before_last, last = (call - began for call in request.calls)
    assert before_last + 3.0 <= 20.0 < last + 3.0
    # an answer let through begins the count again
    pacer.succeeded("write")
    assert pacer.throttled("write", 3.0).since == anyio.current_time()


async def test_a_gets_429_pauses_listing_only_and_each_lane_reads_its_own_headers() -> None:
    pacer = Pacer(100, clock=anyio.current_time)
    request = Script([throttle(5.0)])
    await send_paced(request, pacer, RetryPolicy(), lane="read")
    assert request.calls[1] - request.calls[0] >= 5.0
    assert pacer.ceiling is None  # the listing's numbers are the listing's
    pacer.throttled("read", 5.0)
    assert pacer.pause is not None
    assert pacer.pause.lanes == ("read",)
    with anyio.fail_after(0.1):  # a change does not wait for the listing's pause
        for _ in range(2):  # (two answers announce the same reset: it is believed)
            await send_paced(Script([]), pacer, RetryPolicy(), lane="write")
    assert pacer.ceiling == pytest.approx(200.0)  # 100 requests in a window of half a second


async def test_an_error_that_is_no_throttle_still_hands_over_its_headers() -> None:
    pacer = Pacer(100, clock=anyio.current_time)
    failing = ServerError(503, "busy", rate_limit=RateLimitInfo(50, 10, 1.0))
    policy = RetryPolicy(max_attempts=2, base_delay=0.01)  # two answers, the same reset
    with pytest.raises(ServerError):
        await send_paced(Script([failing, failing]), pacer, policy, lane="write")
    assert pacer.ceiling == pytest.approx(50.0)
