"""Writing a result log: one JSON line a record, flushed as written, fsynced at least every
second, so that a crash can only tear the last line."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn

import orjson

from bulkruns.errors import JournalError

__all__ = ["JournalWriter"]

_TAIL_BLOCK = 64 << 10
_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE


class JournalWriter:
    """Appends records to a result log, one JSON line each.

    Every record is flushed to the operating system as it is written, and fsynced when
    more than ``fsync_interval`` seconds have passed since the last fsync (and at
    :meth:`close`), so a crash loses at most that long of records, and tears at most the
    last line. Usable as a context manager, which closes it.

    If the file already ends in a torn line, the fragment is removed first (or, if it is
    a whole record that only lacks its newline, the newline is added), so that the next
    record starts on a fresh line and the log stays readable.

    Args:
        path: the log; created if missing, appended to otherwise.
        new: create the log, exclusively: a log that exists already is refused, so two jobs
            can never write one file.
        fsync_interval: the longest time, in seconds, written records may wait for an fsync.
        sync_on_write: fsync from :meth:`write` when one is due. A job turns it off and
            calls :meth:`fsync` from a worker thread instead, so that a slow disk never
            blocks its event loop.
        clock: monotonic seconds; replace it in tests.

    Raises:
        JournalError: the file cannot be opened or written (a full disk, say), or a new log
            exists already; after a failed write the writer refuses every further one.
    """

    path: Path

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        new: bool = False,
        fsync_interval: float = 1.0,
        sync_on_write: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._interval = fsync_interval
        self._sync_on_write = sync_on_write
        self._clock = clock
        try:
            created = new or not self.path.exists()
            if not created:
                with self.path.open("r+b") as existing:
                    _repair_tail(existing)
            self._file: BinaryIO | None = self.path.open("xb" if new else "ab")
            if created:
                # The new directory entry must survive a crash too, or the log is lost.
                _fsync_dir(self.path.parent)
        except FileExistsError:
            raise JournalError(
                f"{self.path} already exists: resume it, or choose another --log"
            ) from None
        except OSError as exc:
            raise JournalError(
                f"cannot write the result log {self.path}: {exc.strerror or exc}"
            ) from exc
        self._last_sync = clock()
        self._failure: JournalError | None = None

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._file is None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line, flush it, and fsync if one is due.

        Args:
            record: a JSON-serialisable mapping with a ``"type"``.
        """
        self._append(orjson.dumps(record, option=_DUMP_OPTIONS))

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append several records with one write and one flush, then fsync if one is due."""
        data = b"".join(orjson.dumps(r, option=_DUMP_OPTIONS) for r in records)
        if data:
            self._append(data)

    def _append(self, data: bytes) -> None:
        file = self._open_file()
        try:
            file.write(data)
            file.flush()
        except OSError as exc:
            self._fail(exc)
        if self._sync_on_write:
            self.sync_if_due()

    @property
    def sync_due(self) -> bool:
        """Whether ``fsync_interval`` seconds have passed since the last fsync."""
        return self._clock() - self._last_sync >= self._interval

    def sync_if_due(self) -> None:
        """fsync if at least ``fsync_interval`` seconds have passed since the last fsync."""
        if self.sync_due:
            self.sync()

    def fsync(self) -> None:
        """fsync what has been written, and nothing else: safe from another thread while
        this one writes (every record was flushed to the operating system already)."""
        file = self._open_file()
        try:
            os.fsync(file.fileno())
        except OSError as exc:
            self._fail(exc)
        self._last_sync = self._clock()

    def sync(self) -> None:
        """Flush and fsync now."""
        file = self._open_file()
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            self._fail(exc)
        self._last_sync = self._clock()

    def close(self) -> None:
        """fsync and close the file; closing twice is harmless.

        A writer that has failed closes without writing more: what reached the file is a
        log whose last line may be torn, which reading and reopening both handle.
        """
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            if self._failure is None:
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            self._failure = self._error(exc)
            raise self._failure from exc
        finally:
            with contextlib.suppress(OSError):  # the buffer's flush failed already
                file.close()

    def _open_file(self) -> BinaryIO:
        if self._failure is not None:
            raise self._failure
        if self._file is None:
            raise ValueError(f"the result log {self.path} is closed")
        return self._file

    def _error(self, exc: OSError) -> JournalError:
        return JournalError(f"cannot write the result log {self.path}: {exc.strerror or exc}")

    def _fail(self, exc: OSError) -> NoReturn:
        # Once a write failed, nothing more is written: a record after a torn one would
        # turn the torn line into a corrupt line in the middle of the log.
        self._failure = self._error(exc)
        raise self._failure from exc


def _repair_tail(file: BinaryIO) -> None:
    """Make the log end with a whole line, as :func:`read_journal` would read it."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return
    file.seek(size - 1)
    terminated = file.read(1) == b"\n"
    end = size - 1 if terminated else size
    start = _line_start(file, end)
    file.seek(start)
    last = file.read(end - start)
    if not last.strip():
        if terminated:
            return
        file.truncate(start)
    elif _parses(last):
        if terminated:
            return
        # A whole record that lost only its newline: keep it.
        file.seek(size)
        file.write(b"\n")
    else:
        # The reader drops an unreadable last line; appending after it would turn it
        # into a corrupt line in the middle of the log.
        file.truncate(start)
    file.flush()
    os.fsync(file.fileno())


def _line_start(file: BinaryIO, end: int) -> int:
    """The offset just after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        lo = max(0, pos - _TAIL_BLOCK)
        file.seek(lo)
        found = file.read(pos - lo).rfind(b"\n")
        if found >= 0:
            return lo + found + 1
        pos = lo
    return 0


def _parses(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - and some cannot fsync one
        pass
    finally:
        os.close(fd)
