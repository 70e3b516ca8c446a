"""Jobs: what one is (``spec``, ``options``), how it runs (``job``, its ``pool`` of workers,
each run's ``apply``), and what it reports (``values``, counted by its ``tally``)."""

from bulkruns.job.job import Job
from bulkruns.job.options import TALLYFY_RATE, JobOptions
from bulkruns.job.spec import JobSpec, check_owner
from bulkruns.job.values import Progress, ProgressHook, Summary

__all__ = [
    "TALLYFY_RATE",
    "Job",
    "JobOptions",
    "JobSpec",
    "Progress",
    "ProgressHook",
    "Summary",
    "check_owner",
]
