"""What Tallyfy's answers mean, with no I/O: a status, headers and a body in; a
:class:`Page`, a :class:`Reply` or an :class:`~bulkruns.errors.APIError` out.

The client hands every answer it receives to :func:`read_page` or :func:`read_reply`; a
test can hand them bytes of its own.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from bulkruns.errors import APIError, RateLimitInfo, ServerError, api_error

__all__ = [
    "Page",
    "RateLimitInfo",
    "Reply",
    "parse_rate_limit",
    "parse_retry_after",
    "read_page",
    "read_reply",
]

_MESSAGE_LIMIT = 300  # characters of a server's message kept in an error

# An X-RateLimit-Reset above this is a Unix time (Laravel's, GitHub's); below, seconds to go.
_EPOCH_THRESHOLD = 1_000_000_000
_MILLIS_THRESHOLD = 100_000_000_000  # and above this, a Unix time in milliseconds

Headers = Mapping[str, str]  # case-insensitive, as aiohttp's are


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a run listing.

    Attributes:
        runs: the ``data`` list, as parsed (run fields are not interpreted).
        total: ``meta.pagination.total``: how many runs match, right now.
        per_page: the page size asked for.
        current_page: the page number asked for (1-based).
        request_id: the ``X-Request-Id`` response header.
        reported_per_page: ``meta.pagination.per_page``, the size the server says it used,
            when it says one.
        rate_limit: the ``X-RateLimit-*`` headers, when the answer had any.
    """

    runs: list[dict[str, Any]]
    total: int
    per_page: int
    current_page: int
    request_id: str | None
    reported_per_page: int | None = None
    rate_limit: RateLimitInfo | None = None

    @property
    def page_size(self) -> int:
        """The runs a page holds as the server serves them: the size asked, unless the
        server says it used fewer, or (on page 1) serves fewer than ``total`` calls for.

        Some of Tallyfy's endpoints serve fewer rows a page than asked, and offsets then
        follow the size served: every page number must be read with that size.
        """
        size = self.per_page
        reported = self.reported_per_page
        if reported is not None and 0 < reported < size:
            size = reported
        rows = len(self.runs)
        if self.current_page == 1 and 0 < rows < min(size, self.total):
            size = rows  # a server that echoes the size asked, and serves less
        return size

    @property
    def page_count(self) -> int:
        """Pages in the listing, from ``total`` and the size served.

        Never Tallyfy's ``total_pages``, which has been seen computed with page size 10.
        """
        return math.ceil(self.total / self.page_size)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a mutation.

    Attributes:
        status: the HTTP status (2xx).
        data: the ``data`` object (the run as it is now), or None for an empty body, as a
            permanent delete answers.
        request_id: the ``X-Request-Id`` response header.
        rate_limit: the ``X-RateLimit-*`` headers, when the answer had any.
    """

    status: int
    data: dict[str, Any] | None
    request_id: str | None
    rate_limit: RateLimitInfo | None = None


def read_page(status: int, headers: Headers, payload: bytes, *, page: int, per_page: int) -> Page:
    """The page a list answer holds.

    Raises:
        APIError: an error status, or a 2xx that is not a run list.
    """
    request_id = headers.get("X-Request-Id")
    body = _decode(status, headers, payload)
    meta = body.get("meta") if isinstance(body, dict) else None
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    data = body.get("data") if isinstance(body, dict) else None
    total = pagination.get("total") if isinstance(pagination, dict) else None
    reported = pagination.get("per_page") if isinstance(pagination, dict) else None
    if (
        not isinstance(data, list)
        or not all(isinstance(run, dict) for run in data)
        or not isinstance(total, int)
        or isinstance(total, bool)
        or total < 0
    ):
        raise _unexpected(status, "a run list", payload, request_id)
    if not isinstance(reported, int) or isinstance(reported, bool):
        reported = None
    return Page(data, total, per_page, page, request_id, reported, parse_rate_limit(headers))


def read_reply(status: int, headers: Headers, payload: bytes) -> Reply:
    """The reply a mutation's answer holds: the run as it is now, or no data.

    Raises:
        APIError: an error status, or a 2xx whose body is neither empty nor ``{"data":{…}}``.
    """
    request_id = headers.get("X-Request-Id")
    parsed = _decode(status, headers, payload)
    rate_limit = parse_rate_limit(headers)
    if parsed is None:
        return Reply(status, None, request_id, rate_limit)
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, dict):
        raise _unexpected(status, 'a {"data": {…}} object', payload, request_id)
    return Reply(status, data, request_id, rate_limit)


def _decode(status: int, headers: Headers, payload: bytes) -> Any:
    """The parsed body of a 2xx answer (None when empty); an APIError otherwise."""
    request_id = headers.get("X-Request-Id")
    if not 200 <= status < 300:
        if 300 <= status < 400:
            location = headers.get("Location", "nowhere")
            raise api_error(
                status, f"redirected to {location}: check the base URL", request_id=request_id
            )
        message, errors = _error_message(
            status, _reason(status), headers.get("Content-Type", ""), payload
        )
        rate_limit = parse_rate_limit(headers)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None and status == 429 and rate_limit is not None:
            retry_after = rate_limit.reset  # a 429 that says when its window resets
        raise api_error(
            status,
            message,
            errors=errors,
            request_id=request_id,
            retry_after=retry_after,
            rate_limit=rate_limit,
        )
    if not payload.strip():
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _unexpected(status, "JSON", payload, request_id) from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None for a missing or unreadable value, and never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT, even when it fails to say so
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_rate_limit(headers: Headers, *, now: float | None = None) -> RateLimitInfo | None:
    """The ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` headers, or None without them.

    An unreadable or negative value counts as absent, and so does a limit of 0, which would
    allow nothing ever; ``now`` is the Unix time a reset given as a Unix time is counted from
    (the current time by default).
    """
    limit = _count(headers.get("X-RateLimit-Limit")) or None
    remaining = _count(headers.get("X-RateLimit-Remaining"))
    if limit is None and remaining is None:
        return None
    reset = _seconds(headers.get("X-RateLimit-Reset"))
    if reset is not None and reset > _MILLIS_THRESHOLD:
        reset /= 1000.0
    if reset is not None and reset > _EPOCH_THRESHOLD:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return RateLimitInfo(limit, remaining, reset)


def _count(value: str | None) -> int | None:
    try:
        number = int(value.strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value.strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _reason(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


def _snippet(payload: bytes) -> str:
    text = payload[:200].decode("utf-8", "replace")
    return text + ("…" if len(payload) > 200 else "")


def _unexpected(status: int, wanted: str, payload: bytes, request_id: str | None) -> APIError:
    return ServerError(
        status,
        f"unexpected response: expected {wanted}, got {_snippet(payload)!r}",
        request_id=request_id,
    )


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
