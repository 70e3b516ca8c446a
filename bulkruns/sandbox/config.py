"""The sandbox's settings: how many runs, how strict the rate limit, which faults to inject."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from bulkruns.sandbox.rules import LIST_FILTERS, MAX_PER_PAGE, STATUS_ARCHIVED_READINGS
from bulkruns.sandbox.shape import Limit

__all__ = ["LINKS_STYLES", "PER_PAGE_REPORTS", "SandboxConfig"]

# One token per process, so that every sandbox started by one test session or one
# `bulkruns sandbox` accepts the same credentials unless a token is given.
_PROCESS_TOKEN = "sbx_" + secrets.token_hex(16)

LINKS_STYLES = ("object", "list", "null")
PER_PAGE_REPORTS = ("served", "asked")


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How a sandbox behaves.

    Attributes:
        org: the organisation ID the sandbox serves; any other org in a path gets 403.
        token: the bearer token it accepts; random per process unless given.
        runs: how many runs to seed.
        seed: the seed of the generated runs and of the fault dice.
        rate_limit: requests per ``window`` seconds per token (rolling); 0 = neither this
            limit nor its burst rule (``limits`` still apply).
        window: the rolling window of the rate limit, in seconds.
        burst_limit: the most requests accepted in any one second before a burst penalty;
            None = three times the average rate per second, at least 5.
        burst_penalty: seconds of 429 answers after a burst.
        limits: more limits, on top of ``rate_limit`` and its burst rule: other windows, a
            GET budget, an hourly cap, an edge proxy's (see :class:`Limit`).
            ``rate_limits`` is every limit in force.
        cotenant: another client's requests per second on the same token's budget, spread
            evenly and simulated (no real requests): it counts on every limit but the
            GET-only ones, when they have room, so the sandbox's clients get what is left.
        latency: seconds each request waits before it is handled.
        jitter: up to this many seconds more or less than ``latency``, uniformly.
        fail_before: share of mutations answered 503 before anything changed.
        fail_after: share of mutations answered 500 after the change was applied.
        reset_rate: share of requests whose connection is dropped without an answer
            (for mutations, after the change was applied).
        stall_rate: share of requests held ``stall_seconds`` before they are handled.
        stall_seconds: how long a stalled request is held.
        delete_unarchived_status: the status of a permanent delete of a run that is not
            archived: 422, or 404 as some deployments answer.
        total_pages_quirk: compute ``total_pages`` with the default page size 10, as
            Tallyfy has been seen to do, instead of ``per_page`` (on by default).
        links_style: the shape of ``meta.pagination.links``: ``"object"``
            (``{"next": …, "previous": …}``), ``"list"`` (``[]``) or ``"null"``.

    Where Tallyfy's server departs from its docs, as its own clients record, a switch
    models it, set by default as Tallyfy does it where the evidence says what it does
    (assignees stripped, ``status=archived`` no filter); the rest are off by default:

    Attributes:
        strip_unsent_assignees: an update reads an absent ``users`` or ``groups`` as an
            empty list and detaches every assignee of that bucket, answering 200; a sent
            list replaces the bucket. Tallyfy does this: its ``RunService::editRun``
            always saves ``Arr::only($data, ['users','groups'])`` with ``$data['users']
            ?? []``, proven on production on 2026-07-21 (a run PUT with only a name read
            back ``{"users":[],"groups":[]}``): tallyfy/mcp-public
            ``server/tools/process_management.py``, ``_preserved_run_assignment_buckets``.
            Other fields (``prerun`` among them) are left alone when absent. On by
            default, as Tallyfy does it.
        page_size: the most runs a list page holds, whatever ``per_page`` asks (None =
            as asked, up to 100); offsets follow: page N starts at (N-1) x the size
            served, and ``total_pages`` is computed with it. Tallyfy's MCP server
            (tallyfy/mcp-public ``server/utils/pagination.py``) records endpoints that
            ignore ``per_page`` for a fixed 10 and whose ``total_pages`` then fits the size
            served; it does not say whether the run list is one of them.
        per_page_reported: what ``meta.pagination.per_page`` says when a page is smaller
            than asked: ``"served"`` (the size used, as Laravel's paginator reports it) or
            ``"asked"`` (an echo of the request). The evidence does not say: Tallyfy's MCP
            server reads only the rows and ``total_pages``. ``count`` is always the rows
            on the page.
        status_archived: how a list reads ``status=archived``. Tallyfy's docs list it
            among the statuses, but its own clients never send it: its MCP server tells
            callers to use ``archived=only``, "NOT status=archived", and rewrites the one
            into the other (tallyfy/mcp-public ``server/tools/process_management.py``,
            ``get_organization_runs``). What the server does with it is not recorded:
            ``"lists-archived"`` (as the docs say), ``"ignored"`` (no status filter: the
            default list of live runs) or ``"matches-none"`` (a status no live run has: an
            empty list). ``"ignored"`` by default: what a client that trusts the docs
            meets at its worst, a list of the wrong runs.
        ignored_filters: list parameters the server ignores as if it did not know them,
            as a deployment without those filters would (any of ``LIST_FILTERS`` in
            :mod:`~bulkruns.sandbox.rules`): their runs are not narrowed by them, and a bad
            value is not refused. Tallyfy ignores parameters it does not know, and a
            filter value it does not support is "a silent passthrough that returns
            misleading results" (tallyfy/mcp-public ``get_organization_runs``, on
            ``type``).
        list_omits: run fields a list page leaves out, though reading the run
            (``GET …/runs/{id}``) shows them. Tallyfy's list sample shows a run's main
            fields and then "other run properties", unnamed; which it leaves out is not
            recorded, so none by default.
        launches_per_list: runs other people launch after each list page served. A
            real organisation launches, renames and completes runs while a job lists;
            how often is its own, so these three default to none. Their work is seeded
            (``seed``), counted in the stats under ``others``, and never in ``changes``.
            A launched run is the newest: it lands on page 1 of the default order and
            pushes every later page back by one.
        renames_per_list: live runs other people rename after each list page served,
            which moves them under ``sort=name`` (and ``sort=-last_updated``).
        completions_per_list: active runs other people complete after each list page
            served: they leave ``status=active`` for ``status=complete``.
        others_for_lists: the list pages served during which other people work, after
            which they stop; None for as long as the sandbox serves.
    """

    org: str = "sandbox-org"
    token: str = _PROCESS_TOKEN
    runs: int = 1000
    seed: int = 1
    rate_limit: int = 600
    window: float = 60.0
    burst_limit: int | None = None
    burst_penalty: float = 3.0
    limits: tuple[Limit, ...] = ()
    cotenant: float = 0.0
    latency: float = 0.0
    jitter: float = 0.0
    fail_before: float = 0.0
    fail_after: float = 0.0
    reset_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    delete_unarchived_status: int = 422
    total_pages_quirk: bool = True
    links_style: str = "object"
    strip_unsent_assignees: bool = True
    page_size: int | None = None
    per_page_reported: str = "served"
    status_archived: str = "ignored"
    ignored_filters: tuple[str, ...] = ()
    list_omits: tuple[str, ...] = ()
    launches_per_list: int = 0
    renames_per_list: int = 0
    completions_per_list: int = 0
    others_for_lists: int | None = None

    def __post_init__(self) -> None:
        if not self.org or "/" in self.org or self.org.strip() != self.org:
            raise ValueError("org must be a non-empty path segment without '/' or spaces")
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("token must be non-empty and contain no whitespace")
        for name in ("runs", "launches_per_list", "renames_per_list", "completions_per_list"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if self.others_for_lists is not None and self.others_for_lists < 0:
            raise ValueError("others_for_lists must be 0 or more, or None for no end")
        if self.rate_limit < 0:
            raise ValueError("rate_limit must be 0 (no limit) or more")
        if not (math.isfinite(self.window) and self.window > 0):
            raise ValueError("window must be a positive number of seconds")
        if self.burst_limit is not None and self.burst_limit < 1:
            raise ValueError("burst_limit must be at least 1, or None for the default")
        for name in ("burst_penalty", "latency", "jitter", "stall_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number of seconds")
        if self.jitter > self.latency:
            raise ValueError("jitter must not exceed latency (a request cannot wait < 0 s)")
        self._check_limits()
        for name in ("fail_before", "fail_after", "reset_rate", "stall_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1")
        if self.delete_unarchived_status not in (404, 422):
            raise ValueError("delete_unarchived_status must be 404 or 422")
        if self.page_size is not None and not 1 <= self.page_size <= MAX_PER_PAGE:
            raise ValueError(f"page_size must be 1 to {MAX_PER_PAGE}, or None to serve as asked")
        for name, choices in (
            ("links_style", LINKS_STYLES),
            ("per_page_reported", PER_PAGE_REPORTS),
            ("status_archived", STATUS_ARCHIVED_READINGS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}")
        filters = self.ignored_filters
        if not isinstance(filters, tuple) or not set(filters) <= set(LIST_FILTERS):
            raise ValueError(f"ignored_filters must be list filters: {', '.join(LIST_FILTERS)}")
        omits = self.list_omits
        if not isinstance(omits, tuple) or not all(isinstance(n, str) for n in omits):
            raise ValueError("list_omits must be a tuple of run field names")
        if "id" in omits:
            raise ValueError("list_omits must not leave out a run's id")

    @property
    def effective_burst_limit(self) -> int:
        """The burst limit in force: as configured, or 3x the average rate per second (>= 5)."""
        if self.burst_limit is not None:
            return self.burst_limit
        return max(5, math.ceil(3 * self.rate_limit / self.window))

    @property
    def rate_limits(self) -> tuple[Limit, ...]:
        """Every limit in force: the rolling window of ``rate_limit``, its burst rule, ``limits``.

        The burst rule is a limit too: ``effective_burst_limit`` per second, whose refusal
        earns ``burst_penalty`` seconds of 429s, and which sends no headers of its own.
        """
        if self.rate_limit == 0:
            return self.limits
        window = Limit(requests=self.rate_limit, seconds=self.window)
        burst = Limit(
            requests=self.effective_burst_limit,
            seconds=1.0,
            penalty=self.burst_penalty,
            headers=False,
            name="burst",
        )
        return (window, burst, *self.limits)

    def _check_limits(self) -> None:
        if not isinstance(self.limits, tuple) or not all(
            isinstance(limit, Limit) for limit in self.limits
        ):
            raise ValueError(
                "limits must be a tuple of Limit objects, e.g. (Limit.parse('12/5s get'),)"
            )
        if not (math.isfinite(self.cotenant) and self.cotenant >= 0):
            raise ValueError("cotenant must be 0 or more requests per second")
        labels = [limit.label for limit in self.rate_limits]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(
                f"limits must not repeat a limit: {', '.join(twice)} is there twice "
                "(drop one, or give it another name=…)"
            )
