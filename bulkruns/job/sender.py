"""Every request a job sends: through its pacer in the request's lane, retried as its policy
allows, counted in its tally; a refused token, or a wait longer than ``max_wait``, ends it.

The pacer finds the server's limit as the job goes (:mod:`bulkruns.pace`); the sender shows
what it found (the pace, a pause and its reason, the ceiling) to the job's progress and
summary, and takes a new rate while the job runs (``bulkruns rethrottle``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

from bulkruns import settings
from bulkruns.api import Client, Page
from bulkruns.errors import APIError, AuthError, TransportError, WaitTooLong
from bulkruns.job.options import JobOptions
from bulkruns.job.tally import Tally
from bulkruns.pace import Attempts, Pacer, RetryPolicy, send_paced

__all__ = ["Sender"]

T = TypeVar("T")

Halt = Callable[[str, str], Awaitable[NoReturn]]
"""Aborts the job, for a reason and with a sentence, and ends the calling task."""


class Sender:
    """Sends a job's requests.

    Args:
        options: the job's pace, attempts and longest wait.
        tally: counts requests, retries, 429s and the requests in flight.
        on_retry: told of each failed attempt that will be retried (a 429 among them).
        halt: aborts the job (a refused token, a wait past ``max_wait``).
    """

    def __init__(
        self,
        options: JobOptions,
        tally: Tally,
        *,
        on_retry: Callable[[], None],
        halt: Halt,
    ) -> None:
        self.pacer = Pacer(options.rate)
        self._policy = RetryPolicy(
            max_attempts=options.max_attempts,
            max_elapsed=options.max_elapsed,
            max_wait=options.max_wait,
        )
        self._tally = tally
        self._on_retry = on_retry
        self._halt = halt

    async def send(
        self,
        request: Callable[[], Awaitable[T]],
        attempts: Attempts,
        *,
        read: bool,
        on_send: Callable[[], None] | None = None,
    ) -> T:
        """Send one request, retrying as the job's policy allows.

        Args:
            request: makes the request afresh for each attempt.
            attempts: counts the attempts, and whether one may have been applied.
            read: the request only reads (the listing's lane, not the changes').
            on_send: called as each attempt leaves, before it is counted.
        """
        tally = self._tally

        def sent() -> None:
            if on_send is not None:
                on_send()
            tally.sent()

        async def answered() -> T:
            tally.in_flight += 1
            try:
                return await request()
            finally:
                tally.in_flight -= 1

        try:
            return await send_paced(
                answered,
                self.pacer,
                self._policy,
                attempts,
                lane="read" if read else "write",
                on_send=sent,
                on_error=self._failed,
            )
        except AuthError as exc:
            await self._halt(
                "auth",
                f"Tallyfy refused the access token ({exc}); check TALLYFY_ACCESS_TOKEN "
                "or --token-file",
            )
        except WaitTooLong as exc:
            await self._halt("throttled", f"{exc.message.replace('max_wait', '--max-wait')}")

    async def page(
        self, client: Client, per_page: int, params: Sequence[tuple[str, str]], number: int
    ) -> Page:
        """One page of a query, for the job's listing; a page that cannot be had ends the
        job (resumable)."""
        list_runs = functools.partial(client.list_runs, params, page=number, per_page=per_page)
        try:
            return await self.send(list_runs, Attempts(), read=True)
        except APIError as exc:
            await self._halt("listing", f"listing page {number} failed: {exc}")
        except TransportError as exc:  # its message names the page already
            await self._halt("listing", f"{exc}; resume the job once Tallyfy answers")

    def _failed(self, error: APIError | TransportError, retrying: bool) -> None:
        self._tally.failed_attempt(error, retrying)
        if retrying:
            self._on_retry()

    def set_rate(self, rate: float) -> None:
        """Pace the job at ``rate`` requests per second from now on (0 for unpaced).

        Raises:
            ConfigError: not a number of requests per second.
        """
        settings.number("rate", rate, low=0, meaning="requests per second, 0 for unpaced")
        self.pacer.set_rate(rate)

    @property
    def rate(self) -> float:
        """The pace aimed at now, in requests per second (0 when unpaced)."""
        return self.pacer.current_rate

    @property
    def found(self) -> float | None:
        """The limit the server seemed to allow, when it is below the configured rate."""
        ceiling = self.pacer.ceiling
        configured = self.pacer.rate
        return ceiling if ceiling is not None and (not configured or ceiling < configured) else None

    def pause(self) -> tuple[float, str] | None:
        """The pause every request is in (or the listing's), as its end in epoch seconds
        and its reason; None when there is none."""
        pause = self.pacer.pause
        if pause is None:
            return None
        return time.time() + (pause.until - time.monotonic()), pause.reason
