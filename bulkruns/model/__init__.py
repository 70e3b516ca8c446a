"""What a job is about, with no I/O: the operations and their steps, run filters, run IDs,
moments, and one run's work and result."""

from bulkruns.model.filters import ARCHIVED_STYLES, STATUSES, ArchivedStyle, RunFilter
from bulkruns.model.ids import id_key, is_run_id, read_ids
from bulkruns.model.items import ItemResult, Outcome, Work
from bulkruns.model.operations import (
    UPDATABLE_FIELDS,
    Operation,
    OperationName,
    Step,
    validate_fields,
)
from bulkruns.model.when import parse_duration, parse_timestamp, parse_when

__all__ = [
    "ARCHIVED_STYLES",
    "STATUSES",
    "UPDATABLE_FIELDS",
    "ArchivedStyle",
    "ItemResult",
    "Operation",
    "OperationName",
    "Outcome",
    "RunFilter",
    "Step",
    "Work",
    "id_key",
    "is_run_id",
    "parse_duration",
    "parse_timestamp",
    "parse_when",
    "read_ids",
    "validate_fields",
]
