"""bulkruns itself, driven through the library as a program embedding it would.

    TALLYFY_BASE_URL=… TALLYFY_ORG_ID=… TALLYFY_ACCESS_TOKEN=… \
        python -m benchmarks.clients.bulkruns_job --status complete --rate 200 --journal J

A new job archives the runs a filter selects (``--status``), or those of an ID file
(``--ids-file``); ``--resume`` continues a job from its result log. The job keeps a
result log, as the command line always does. Prints one JSON result line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import anyio

from benchmarks.clients.report import Meter
from bulkruns import Client, Job, JobOptions, Operation, Reply, RunFilter, read_ids


class _TimedClient(Client):
    """A client that tells the meter when its first mutation leaves."""

    meter: Meter

    async def archive(self, run_id: str) -> Reply:
        self.meter.mutation_sent()
        return await super().archive(run_id)


async def _main(args: argparse.Namespace) -> None:
    meter = Meter()
    options = JobOptions(
        concurrency=args.concurrency,
        journal=None if args.resume else args.journal,
        limit=args.limit,
        max_failures=None,
    )
    if args.rate is not None:  # told a rate; else bulkruns' default
        options = dataclasses.replace(options, rate=args.rate)
    client = _TimedClient(
        org=os.environ["TALLYFY_ORG_ID"],
        token=os.environ["TALLYFY_ACCESS_TOKEN"],
        base_url=os.environ["TALLYFY_BASE_URL"],
        concurrency=args.concurrency,
    )
    client.meter = meter
    # Read as the job goes, as the command line reads an ID file: the job pins them first.
    ids = open(args.ids_file) if args.ids_file else None  # noqa: ASYNC230, SIM115
    async with client:
        try:
            # The clock starts before the job is built: building it is part of the job
            # (a resume reads the whole log, an ID-file job pins its plan first).
            meter.start()
            job: Job
            if args.resume:
                job = Job.resume(client, args.resume, options)
            elif ids is not None:
                job = Job(client, Operation(name="archive"), read_ids(ids, source="ids"), options)
            else:
                job = Job(client, Operation(name="archive"), RunFilter(status=args.status), options)
            summary = await job.run()
            meter.stop()
        finally:
            if ids is not None:
                ids.close()
    extra: dict[str, Any] = {
        "skipped": summary.skipped,
        "client_requests": summary.requests,
        "retries": summary.retries,
        "client_throttled": summary.throttled,
        "sweeps": summary.sweeps,
        "verified": summary.verified,
        "aborted": summary.aborted,
        "job_elapsed": summary.elapsed,
    }
    meter.emit(ok=summary.ok, failed=summary.failed, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", default="complete", help="the filter: runs with this status")
    parser.add_argument("--ids-file", help="archive the runs of this file instead")
    parser.add_argument("--resume", help="resume the job of this result log")
    parser.add_argument(
        "--rate", type=float, help="requests/s; 0 = unpaced (default: JobOptions' default)"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--journal", help="the result log of a new job")
    args = parser.parse_args()
    if not args.resume and not args.journal:
        parser.error("a new job needs --journal")
    anyio.run(_main, args)


if __name__ == "__main__":
    main()
