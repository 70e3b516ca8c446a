"""The workers: a pool that drains the job's queue, and stops on request by taking no new
run and giving the runs in hand a grace period, a deadline on its cancel scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from bulkruns.model import Work

__all__ = ["Pool"]


class Pool:
    """``size`` workers, each taking one run at a time from the queue.

    Args:
        size: the number of workers, which is the most runs in hand at once.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._scope: anyio.CancelScope | None = None
        self._grace: float | None = None  # set by stop()

    async def run(
        self,
        receive: MemoryObjectReceiveStream[Work],
        handle: Callable[[Work], Awaitable[None]],
        done: Callable[[], None],
    ) -> None:
        """Drain ``receive`` until it is closed and empty, or the pool is stopped.

        Args:
            receive: the queue.
            handle: processes one run.
            done: called once per run taken, however its handling ended.
        """
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._grace is not None:  # stopped before it started
                scope.deadline = anyio.current_time() + self._grace
            async with anyio.create_task_group() as tg, receive:
                for _ in range(self.size):
                    tg.start_soon(self._work, receive.clone(), handle, done)

    async def _work(
        self,
        receive: MemoryObjectReceiveStream[Work],
        handle: Callable[[Work], Awaitable[None]],
        done: Callable[[], None],
    ) -> None:
        async with receive:
            async for work in receive:
                if self._grace is not None:
                    return  # left in the queue: resume finds it again
                try:
                    await handle(work)
                finally:
                    done()

    def stop(self, grace: float) -> None:
        """Take no new run; cancel the runs in hand ``grace`` seconds from now.

        Call it from the event loop's thread (a signal handler added to the loop is), or
        before the pool runs.
        """
        if self._grace is not None:
            return
        self._grace = grace
        if self._scope is not None:
            self._scope.deadline = anyio.current_time() + grace
