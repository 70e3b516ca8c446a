from __future__ import annotations

import email.utils

import pytest
from multidict import CIMultiDict

from bulkruns.api import RateLimitInfo, Reply, parse_rate_limit, parse_retry_after
from bulkruns.api.answers import read_page, read_reply
from bulkruns.errors import (
    AuthError,
    ConfigError,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
    api_error,
)
from bulkruns.pace import RetryPolicy, outcome_unknown, retryable


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
    assert parse_rate_limit(headers(x_ratelimit_remaining="5")) == RateLimitInfo(None, 5, None)


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"X-RateLimit-Reset": "30"},  # a reset alone says nothing about what is left
        {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-1"},
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


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    top = RetryPolicy(base_delay=0.5, max_delay=4.0, random=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    bottom = RetryPolicy(random=lambda: 0.0)
    assert bottom.backoff(3) == 0.0


def test_next_delay_honours_retry_after_over_backoff() -> None:
    policy = RetryPolicy(random=lambda: 0.5)
    throttled = RateLimited(429, "slow", retry_after=12.0)
    assert policy.next_delay(throttled, attempt=1, elapsed=0.0) == 12.0
    assert policy.next_delay(ServerError(503, "x"), attempt=2, elapsed=0.0) == 0.5
    assert policy.next_delay(ServerError(503, "x", retry_after=100.0), attempt=1, elapsed=0) == 30.0


def test_next_delay_is_bounded_by_attempts_and_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=10.0, random=lambda: 0.5)
    error = ServerError(500, "x")
    assert policy.next_delay(error, attempt=2, elapsed=0.0) is not None
    assert policy.next_delay(error, attempt=3, elapsed=0.0) is None
    assert policy.next_delay(RateLimited(429, "x", retry_after=11.0), attempt=1, elapsed=0) is None
    assert policy.next_delay(NotFound(404, "x"), attempt=1, elapsed=0.0) is None


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="max_delay"):
        RetryPolicy(base_delay=5.0, max_delay=1.0)
