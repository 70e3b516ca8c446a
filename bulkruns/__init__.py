"""bulkruns: apply one change to every Tallyfy run a filter selects, at the full rate limit.

Open a ``Client``, build a ``Job`` from an ``Operation``, a selection (a ``RunFilter`` or run
IDs) and ``JobOptions``, and ``await job.run()`` for its ``Summary``. ``Job.resume`` and
``Job.undo`` build jobs from a result log. The README has a runnable example.
"""

from importlib.metadata import version

from bulkruns.client import DEFAULT_BASE_URL, Client, Page, Reply
from bulkruns.engine import ItemResult, Job, JobOptions, Progress, ProgressHook, Summary
from bulkruns.errors import (
    APIError,
    AuthError,
    BulkrunsError,
    ConfigError,
    JournalError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
)
from bulkruns.filters import RunFilter, parse_when, read_ids
from bulkruns.ops import Operation

__version__ = version("bulkruns")

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AuthError",
    "BulkrunsError",
    "Client",
    "ConfigError",
    "ItemResult",
    "Job",
    "JobOptions",
    "JournalError",
    "NotFound",
    "Operation",
    "Page",
    "PermissionDenied",
    "Progress",
    "ProgressHook",
    "RateLimited",
    "Reply",
    "RunFilter",
    "ServerError",
    "Summary",
    "TransportError",
    "Unprocessable",
    "__version__",
    "parse_when",
    "read_ids",
]
