"""The pace of a job: one pacer for every request (in two lanes, under the server's limit
as it finds it), the retry policy, and the paced send that puts the two together."""

from bulkruns.pace.pacer import Lane, Pacer, Pause
from bulkruns.pace.retry import RetryPolicy, outcome_unknown, retryable, throttle_wait
from bulkruns.pace.send import Attempts, send_paced

__all__ = [
    "Attempts",
    "Lane",
    "Pacer",
    "Pause",
    "RetryPolicy",
    "outcome_unknown",
    "retryable",
    "send_paced",
    "throttle_wait",
]
