"""One job per organisation at a time: an advisory lock file in the user's state directory.

Two cron entries that overlap, or a job started while another still runs, would each pace
itself to the full rate limit and together exceed it. The lock makes the second one stop
before it sends anything.

The lock is ``fcntl.flock`` on a file named for the organisation and a hash of the base
URL in a canonical form (:func:`server_key`: the two spellings of Tallyfy's API root are one
server), under ``$XDG_STATE_HOME/bulkruns`` (``~/.local/state/bulkruns`` by default). The
kernel drops a flock when its process ends, however it ends, so a crashed or killed job
never leaves a stale lock behind; the file itself stays, harmlessly, and only says who
held it last.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from bulkruns.api import server_key
from bulkruns.errors import ConfigError

__all__ = ["JobLock", "LockBusy", "lock_path", "state_dir"]


class LockBusy(ConfigError):
    """Another job for the same organisation and server holds the lock."""


def state_dir() -> Path:
    """Where bulkruns keeps per-user state: ``$XDG_STATE_HOME/bulkruns``, else
    ``~/.local/state/bulkruns``."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    # The XDG spec says a relative path is invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "bulkruns"


def lock_path(org: str, base_url: str, directory: Path | None = None) -> Path:
    """The lock file of one organisation on one server.

    The name keeps a readable form of the organisation ID, and a hash of the organisation
    and the server (:func:`server_key`), so that the same org ID on two servers (a sandbox
    and Tallyfy) does not share a lock, the same server written two ways does, and no
    character of either can escape the directory.

    Raises:
        ConfigError: a base URL the client would refuse.
    """
    digest = hashlib.sha256(f"{org}\n{server_key(base_url)}".encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", org)[:40] or "org"
    return (directory or state_dir()) / f"{readable}-{digest}.lock"


class JobLock:
    """An exclusive, non-blocking lock for one organisation on one server.

    ``with JobLock(org, base_url, command="archive"):`` runs the block holding the lock, or
    raises :class:`LockBusy` at once, naming the process that holds it.

    Args:
        org: the organisation ID.
        base_url: the API base URL, in any of its spellings (see :func:`server_key`).
        command: what this process is doing, recorded in the lock file for the message a
            second job shows.
        directory: where the lock file lives; the user's state directory by default.
    """

    def __init__(
        self, org: str, base_url: str, *, command: str = "", directory: Path | None = None
    ) -> None:
        self.org = org
        self.base_url = base_url
        self.command = command
        self.path = lock_path(org, base_url, directory)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise at once.

        Raises:
            LockBusy: another process holds it.
            ConfigError: the state directory cannot be created or written.
        """
        if self._fd is not None:
            raise RuntimeError("the lock is already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the job lock {self.path}: {exc.strerror or exc}; "
                "set XDG_STATE_HOME to a writable directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockBusy(
                f"another bulkruns job for organisation {self.org!r} at {self.base_url} "
                f"is running{holder}; wait for it to end (one job per organisation at a "
                f"time; lock: {self.path})"
            ) from None
        except OSError as exc:  # pragma: no cover - a filesystem without flock
            os.close(fd)
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        self._fd = fd
        # Who holds it, for the second job's message; advisory text only.
        info = (
            f"pid={os.getpid()} host={socket.gethostname()} "
            f"started={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
            f"command={self.command or ' '.join(sys.argv[1:2])}\n"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)

    def release(self) -> None:
        """Let the lock go (closing the file drops the flock). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """`` (pid 123, started …)`` from the lock file, or nothing if it says nothing useful."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace")
    except OSError:  # pragma: no cover
        return ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    said = [f"{k} {fields[k]}" for k in ("pid", "started") if k in fields]
    return f" ({', '.join(said)})" if said else ""
