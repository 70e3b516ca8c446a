"""bulkruns: apply one change to every Tallyfy run a filter selects, at the full rate limit.

Open a ``Client``, build a ``Job`` from an ``Operation``, a selection (a ``RunFilter`` or run
IDs) and ``JobOptions``, and ``await job.run()`` for its ``Summary``. ``Job.resume`` and
``Job.undo`` build jobs from a result log. The README has a runnable example.

The pipeline, one package a stage, each importing only those before it: ``api`` (Tallyfy's
endpoints), ``pace`` (when each request may leave), ``model`` (operations, filters),
``journal`` (the result log), ``select`` (which runs), ``job`` (the workers and the run),
``cli`` on top; ``sandbox`` beside them all.
"""

from bulkruns.api import DEFAULT_BASE_URL, Client, Page, Reply
from bulkruns.api.client import VERSION
from bulkruns.errors import (
    APIError,
    AuthError,
    BulkrunsError,
    ConfigError,
    FilterIgnored,
    JournalError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
    WaitTooLong,
)
from bulkruns.job import Job, JobOptions, JobSpec, Progress, ProgressHook, Summary
from bulkruns.model import ItemResult, Operation, RunFilter, parse_when, read_ids

__version__ = VERSION

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AuthError",
    "BulkrunsError",
    "Client",
    "ConfigError",
    "FilterIgnored",
    "ItemResult",
    "Job",
    "JobOptions",
    "JobSpec",
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
    "WaitTooLong",
    "__version__",
    "parse_when",
    "read_ids",
]
