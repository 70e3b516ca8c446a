"""bulkruns: apply one change to every Tallyfy run a filter selects, at the full rate limit."""

from bulkruns.errors import (
    APIError,
    AuthError,
    BulkrunsError,
    ConfigError,
    JobAborted,
    JournalError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
)

__all__ = [
    "APIError",
    "AuthError",
    "BulkrunsError",
    "ConfigError",
    "JobAborted",
    "JournalError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unprocessable",
]
