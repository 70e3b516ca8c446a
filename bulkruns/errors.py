"""The exceptions bulkruns raises, as one shallow tree.

    BulkrunsError                 everything bulkruns raises
    ├── ConfigError               bad settings or input: nothing was sent (exit 2)
    │   ├── JournalError          a result log that cannot be read or does not fit
    │   └── FilterIgnored         the server seems to ignore a filter: nothing was changed
    ├── APIError                  Tallyfy answered with an error status
    │   ├── AuthError             401: the token is wrong or expired; aborts a job
    │   ├── PermissionDenied      403: the token's user may not do this
    │   ├── NotFound              404: no such run (or, on some deployments, not archived)
    │   ├── Unprocessable         400 / 422: the request was understood and refused
    │   ├── RateLimited           429: too many requests; ``retry_after`` says how long to wait
    │   │   └── WaitTooLong       a 429 asking to wait longer than ``max_wait``: stop, resume later
    │   └── ServerError           5xx: Tallyfy failed; the change may or may not have happened
    └── TransportError            no HTTP answer: connection refused or reset, timeout

A throttle's ``X-RateLimit-*`` headers travel with it as a :class:`RateLimitInfo`, as they do
with every answer.

A job that stops early does not raise: its ``Summary.aborted`` says why, and it is resumable.

Every error's message is meant for a person and never contains the access token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "APIError",
    "AuthError",
    "BulkrunsError",
    "ConfigError",
    "FilterIgnored",
    "JournalError",
    "NotFound",
    "PermissionDenied",
    "RateLimitInfo",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unprocessable",
    "WaitTooLong",
    "api_error",
]


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What an answer's ``X-RateLimit-*`` headers said about the limit it counts against:
    carried by answers and by errors alike (a 429 says it too).

    Attributes:
        limit: ``X-RateLimit-Limit``: the requests its window allows.
        remaining: ``X-RateLimit-Remaining``: the requests left in it.
        reset: seconds from the answer until the window resets, from ``X-RateLimit-Reset``
            (a Unix time, or seconds to go); None when the answer did not say.
    """

    limit: int | None
    remaining: int | None
    reset: float | None = None


class BulkrunsError(Exception):
    """Base class of every error bulkruns raises."""


class ConfigError(BulkrunsError):
    """A setting or an input is unusable; raised before any request is sent.

    Attributes:
        setting: the name of the setting at fault (``concurrency``, ``rate``…), when the
            error is about one, so that the command line can name its flag.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        self.setting = setting
        super().__init__(message)


class JournalError(ConfigError):
    """A result log is missing, corrupt, or belongs to another organisation."""


class FilterIgnored(ConfigError):
    """The server counts as many runs with a filter a run cannot show as without it, so it
    seems to ignore that filter; the job changed nothing.

    Attributes:
        filters: the filters it seems to ignore (``folder``, ``tag``…).
        total: the runs it counts with them, as many as without.
    """

    def __init__(self, filters: tuple[str, ...], total: int) -> None:
        self.filters = filters
        self.total = total
        names = ", ".join(filters)
        it = "it" if len(filters) == 1 else "them"
        super().__init__(
            f"Tallyfy counts as many runs ({total:,}) with the filter on {names} as without "
            f"{it}: it seems to ignore {it}, so nothing was changed; select every such run "
            "on purpose (--all) if that is what is meant"
        )


class APIError(BulkrunsError):
    """Tallyfy answered with an error status.

    Attributes:
        status: the HTTP status code.
        message: Tallyfy's message, or a description of the body when it had none.
        errors: field name -> messages, from a validation error body.
        request_id: the ``X-Request-Id`` response header, worth quoting to Tallyfy support.
        retry_after: seconds to wait before trying again, from ``Retry-After`` (or, on a 429
            without it, ``X-RateLimit-Reset``).
        rate_limit: the answer's ``X-RateLimit-*`` headers, when it had any.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimitInfo | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}
        self.request_id = request_id
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"HTTP {self.status}: {self.message}"
        if self.errors:
            fields = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(self.errors.items()))
            text += f" ({fields})"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text


class AuthError(APIError):
    """401: the access token was refused."""


class PermissionDenied(APIError):
    """403: the token's user lacks the role for this request."""


class NotFound(APIError):
    """404: the run does not exist for this organisation."""


class Unprocessable(APIError):
    """400 or 422: the request was refused as invalid."""


class RateLimited(APIError):
    """429: the rate limit was exceeded.

    It is not a failure of the request: the paced send waits as asked and sends it again.
    """


class WaitTooLong(RateLimited):
    """A 429 whose wait is longer than the job accepts (``max_wait``), such as an hourly cap.

    The job stops, resumable, rather than sit it out.

    Attributes:
        wait: the seconds the server asked for.
        reason: why, for a person: ``"the hourly limit"``, ``"Retry-After 3600 s"``.
    """

    def __init__(self, throttle: RateLimited, *, wait: float, reason: str, max_wait: float) -> None:
        self.wait = wait
        self.reason = reason
        super().__init__(
            throttle.status,
            f"Tallyfy asks to wait {wait:,.0f} s ({reason}), longer than max_wait "
            f"{max_wait:,.0f} s; resume the job later",
            request_id=throttle.request_id,
            retry_after=throttle.retry_after,
            rate_limit=throttle.rate_limit,
        )


class ServerError(APIError):
    """5xx: the server failed; the change may or may not have been applied."""


class TransportError(BulkrunsError):
    """No HTTP answer was received.

    Attributes:
        sent: False when the connection was never made (the request certainly had no
            effect); True when the request may have reached the server (a reset or a
            timeout after sending), so its outcome is unknown.
        lasting: the cause will not pass by itself (a certificate not trusted, a proxy
            refusing the tunnel): another attempt would meet it again, so none is made.
    """

    def __init__(self, message: str, *, sent: bool, lasting: bool = False) -> None:
        self.sent = sent
        self.lasting = lasting
        super().__init__(message)


_BY_STATUS: dict[int, type[APIError]] = {
    400: Unprocessable,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    422: Unprocessable,
    429: RateLimited,
}


def api_error(
    status: int,
    message: str,
    *,
    errors: Mapping[str, Sequence[str]] | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    rate_limit: RateLimitInfo | None = None,
) -> APIError:
    """Build the APIError subclass that fits ``status``."""
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    return cls(
        status,
        message,
        errors=errors,
        request_id=request_id,
        retry_after=retry_after,
        rate_limit=rate_limit,
    )
