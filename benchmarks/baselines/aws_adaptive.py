"""The AWS SDKs' adaptive retry mode as a peer: botocore's own limiter and retries, on a plain job.

A user who wants a client that finds an unknown limit by itself reaches for the AWS SDKs'
adaptive retry mode (``retries={"mode": "adaptive"}``): botocore's ``ClientRateLimiter``, a
token bucket whose rate a CUBIC calculator sets from the throttling responses
(``botocore.retries.adaptive``, ``botocore.retries.throttling``), on top of its standard
retries (``botocore.retries.standard``: a bounded number of attempts, exponential backoff with
full jitter, a retry quota). This client wires both exactly as botocore's ``ClientCreator``
does for that mode, onto a botocore event emitter and a service model for Tallyfy's two calls,
and sends through botocore's own HTTP session, emitting the events botocore's ``Endpoint``
emits around each attempt:

- ``before-send``: the limiter takes a token (blocking), once it has seen a throttle;
- ``needs-retry``: the limiter measures the sending rate and, on a 429, cuts its rate (CUBIC);
  the standard handler says whether and how long to sleep before the next attempt;
- ``after-call``: the retry quota gets its refund.

So every pacing and retry decision is botocore's; this file only sends, parses with botocore's
``rest-json`` parser and sleeps. botocore reads neither ``Retry-After`` (only
``x-amz-retry-after``) nor ``X-RateLimit-*``: it learns from the 429s alone.

The job is the plain one: list every page of the filter (100 runs a page, one after another),
then archive each listed ID from a pool of threads sharing the one client, as boto3 users
parallelise (16, bulkruns' default concurrency). A run whose archive still fails after the
last attempt, or once the retry quota is spent, is counted failed; a list page that does
ends the listing. ``--time-cap`` stops taking new runs after that long (a slow peer's figures
come from its first minutes instead of its whole job): those are reported as not reached.

    TALLYFY_BASE_URL=… TALLYFY_ORG_ID=… TALLYFY_ACCESS_TOKEN=… \
        python -m benchmarks.baselines.aws_adaptive --status complete
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock
from types import SimpleNamespace
from typing import Any

from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.endpoint import convert_to_response_dict
from botocore.hooks import HierarchicalEmitter, first_non_none_response
from botocore.httpsession import URLLib3Session
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import create_parser
from botocore.retries import adaptive, standard

from benchmarks.clients.report import Meter

# Tallyfy's two calls of the job, as a botocore service model: enough for the retry handlers,
# which look at the service's name and the operation's modelled errors (none).
SERVICE = "tallyfy"
_MODEL = {
    "version": "2.0",
    "metadata": {
        "apiVersion": "2026-01-01",
        "endpointPrefix": SERVICE,
        "protocol": "rest-json",
        "serviceId": "Tallyfy",
    },
    "operations": {
        "ListRuns": {
            "name": "ListRuns",
            "http": {"method": "GET", "requestUri": "/organizations/{org}/runs"},
        },
        "ArchiveRun": {
            "name": "ArchiveRun",
            "http": {"method": "DELETE", "requestUri": "/organizations/{org}/runs/{id}"},
        },
    },
    "shapes": {},
}
PER_PAGE = 100

Response = tuple[AWSResponse, dict[str, Any]]  # botocore's (http_response, parsed)


@dataclass
class Outcome:
    """What one call came to, after its attempts."""

    response: Response | None
    error: Exception | None
    attempts: int

    @property
    def status(self) -> int | None:
        return None if self.response is None else int(self.response[0].status_code)

    @property
    def metadata(self) -> dict[str, Any]:
        if self.response is None:
            return {}
        found: dict[str, Any] = self.response[1].get("ResponseMetadata", {})
        return found


class AdaptiveClient:
    """botocore's adaptive retry mode around Tallyfy's calls, safe to share between threads."""

    def __init__(self, base_url: str, token: str, *, max_attempts: int, pool: int) -> None:
        self.base_url = base_url
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "X-Tallyfy-Client": "APIClient",
        }
        model = ServiceModel(_MODEL, service_name=SERVICE)
        self.list_runs: OperationModel = model.operation_model("ListRuns")
        self.archive_run: OperationModel = model.operation_model("ArchiveRun")
        self.events = HierarchicalEmitter()
        # As ClientCreator._register_retries does for mode "adaptive": the standard handler
        # (with the total attempts of retries={"total_max_attempts": N}), then the limiter.
        client = SimpleNamespace(meta=SimpleNamespace(events=self.events, service_model=model))
        standard.register_retry_handler(client, max_attempts=max_attempts)
        adaptive.register_retry_handler(client)
        self.session = URLLib3Session(timeout=60, max_pool_connections=pool)
        self.parser = create_parser("rest-json")
        self.sent = 0
        self._count = Lock()

    def call(self, operation: OperationModel, method: str, url: str) -> Outcome:
        """One API call with its retries, as botocore's ``Endpoint._send_request`` makes it."""
        name = f"{SERVICE}.{operation.name}"
        context: dict[str, Any] = {}
        request_dict = {"context": context}
        attempts = 1
        while True:
            context["retries"] = {"attempt": attempts}
            response, error = self._attempt(name, operation, method, url)
            delay = first_non_none_response(
                self.events.emit(
                    f"needs-retry.{name}",
                    response=response,
                    endpoint=None,
                    operation=operation,
                    attempts=attempts,
                    caught_exception=error,
                    request_dict=request_dict,
                )
            )
            if delay is None or delay is False:
                break
            time.sleep(delay)
            attempts += 1
        if response is not None:  # botocore's client emits after-call for any answer it got
            http, parsed = response
            self.events.emit(
                f"after-call.{name}",
                http_response=http,
                parsed=parsed,
                model=operation,
                context=context,
            )
        return Outcome(response, error, attempts)

    def _attempt(
        self, name: str, operation: OperationModel, method: str, url: str
    ) -> tuple[Response | None, Exception | None]:
        request = AWSRequest(method=method, url=url, headers=self.headers).prepare()
        # The adaptive limiter's on_sending_request: blocks for a token once enabled.
        self.events.emit(f"before-send.{name}", request=request)
        with self._count:
            self.sent += 1
        try:
            http = self.session.send(request)
        except Exception as exc:  # as Endpoint._do_get_response: any error is the outcome
            return None, exc
        parsed = self.parser.parse(convert_to_response_dict(http, operation), None)
        return (http, parsed), None


def _job(args: argparse.Namespace) -> dict[str, Any]:
    org = os.environ["TALLYFY_ORG_ID"]
    runs_url = f"{os.environ['TALLYFY_BASE_URL']}/organizations/{org}/runs"
    client = AdaptiveClient(
        os.environ["TALLYFY_BASE_URL"],
        os.environ["TALLYFY_ACCESS_TOKEN"],
        max_attempts=args.max_attempts,
        pool=args.concurrency,
    )
    meter = Meter()
    statuses: Counter[str] = Counter()
    gave_up: Counter[str] = Counter()
    tally = Lock()  # the counters are shared by the threads
    meter.start()

    ids: list[str] = []
    page = 1
    while True:
        query = f"status={args.status}&per_page={PER_PAGE}&page={page}"
        outcome = client.call(client.list_runs, "GET", f"{runs_url}?{query}")
        if outcome.status != 200:
            statuses[f"list {outcome.status or type(outcome.error).__name__}"] += 1
            break
        assert outcome.response is not None
        body = json.loads(outcome.response[0].content)
        ids.extend(run["id"] for run in body["data"])
        if page * PER_PAGE >= body["meta"]["pagination"]["total"]:
            break
        page += 1

    not_reached = 0

    def archive(run_id: str) -> bool:
        nonlocal not_reached
        if args.time_cap and time.perf_counter() - meter.wall0 > args.time_cap:
            with tally:
                not_reached += 1
            return False
        meter.mutation_sent()
        outcome = client.call(client.archive_run, "DELETE", f"{runs_url}/{run_id}")
        with tally:
            statuses[str(outcome.status or type(outcome.error).__name__)] += 1
            for reason in ("RetryQuotaReached", "MaxAttemptsReached"):
                if outcome.metadata.get(reason):
                    gave_up[reason] += 1
        return outcome.status == 200

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        done = list(pool.map(archive, ids))
    meter.stop()
    ok = sum(done)
    return {
        "meter": meter,
        "ok": ok,
        "failed": len(done) - ok - not_reached,
        "not_reached": not_reached,
        "listed": len(ids),
        "pages": page,
        "client_requests": client.sent,
        "statuses": dict(statuses),
        "gave_up": dict(gave_up),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", default="complete")
    parser.add_argument("--concurrency", type=int, default=16, help="threads sharing the client")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=8,
        help="total attempts per call (botocore's total_max_attempts; bulkruns' default)",
    )
    parser.add_argument(
        "--time-cap", type=float, default=0.0, help="take no new run after this many seconds"
    )
    result = _job(parser.parse_args())
    meter: Meter = result.pop("meter")
    meter.emit(**result)


if __name__ == "__main__":
    main()
