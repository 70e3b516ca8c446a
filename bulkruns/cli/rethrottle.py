"""Changing the pace of an organisation's running job: ``bulkruns rethrottle --rate R``.

The running job's session watches for a request beside its lock (``<lock>.rate``) four times
a second. ``rethrottle`` finds the lock of the organisation and server, checks that a job
holds it, writes the request there (atomically, by a rename), and waits for the job's answer
(``<lock>.rate-done``), which names the request and the rate now in force. The job applies it
with :meth:`~bulkruns.Job.set_rate`, which its display and its log both show.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson

from bulkruns.cli.summary import EXIT_FAILED, EXIT_OK, ExitError
from bulkruns.errors import ConfigError

__all__ = ["RateWatch", "request_rate"]

_POLL = 0.25  # seconds between the job's looks for a request
_ANSWER_WAIT = 3.0  # seconds rethrottle waits for the job to answer


def _request_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".rate")


def _answer_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".rate-done")


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)


def _job_holds(lock: Path) -> bool:
    """Whether a process holds the lock (its flock is taken)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a flock taken here
    return False


def request_rate(lock: Path, rate: float, *, describe: str) -> int:
    """Ask the job holding ``lock`` to change its pace; the exit code.

    Args:
        lock: the organisation's lock file.
        rate: requests per second, checked already.
        describe: the organisation and server, as messages name them.

    Raises:
        ConfigError: no job holds the lock (exit 2).
    """
    if not _job_holds(lock):
        raise ConfigError(f"no bulkruns job is running for {describe}: nothing to rethrottle")
    request = uuid.uuid4().hex
    _write_atomically(_request_path(lock), orjson.dumps({"id": request, "rate": rate}))
    deadline = time.monotonic() + _ANSWER_WAIT
    while time.monotonic() < deadline:
        answer = _read(_answer_path(lock))
        if answer is not None and answer.get("id") == request:
            print(f"the running job of {describe} now paces at {answer.get('rate'):g} requests/s")
            return EXIT_OK
        time.sleep(0.05)
    raise ExitError(
        f"the job running for {describe} did not answer within {_ANSWER_WAIT:g} s; "
        "its pace is unchanged unless it answers later",
        EXIT_FAILED,
    )


def _read(path: Path) -> dict[str, object] | None:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class RateWatch:
    """The running job's side: looks for rate requests beside its lock and applies them.

    Args:
        lock: the lock file the job holds.
        apply: changes the job's rate (:meth:`~bulkruns.Job.set_rate`).
    """

    def __init__(self, lock: Path, apply: Callable[[float], None]) -> None:
        self._request = _request_path(lock)
        self._answer = _answer_path(lock)
        self._apply = apply
        # a request left by an earlier job is not this one's
        with contextlib.suppress(FileNotFoundError):
            self._request.unlink()

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            await anyio.sleep(_POLL)
            self.check()

    def check(self) -> None:
        """Apply a request, if one is waiting."""
        request = _read(self._request)
        if request is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._request.unlink()
        rate = request.get("rate")
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            return
        try:
            self._apply(float(rate))
        except ConfigError:
            return  # rethrottle checked it; a hand-written request is ignored
        _write_atomically(self._answer, orjson.dumps({"id": request.get("id"), "rate": rate}))
