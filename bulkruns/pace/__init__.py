"""The pace of a job: one pacer for every request, the retry policy, and the paced send
that puts the two together."""

from bulkruns.pace.pacer import Pacer
from bulkruns.pace.retry import RetryPolicy, outcome_unknown, retryable
from bulkruns.pace.send import Attempts, send_paced

__all__ = ["Attempts", "Pacer", "RetryPolicy", "outcome_unknown", "retryable", "send_paced"]
