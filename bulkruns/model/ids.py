"""Run IDs: what one looks like, how a file lists them, and the compact form a job keeps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from bulkruns.errors import ConfigError

__all__ = ["id_key", "is_run_id", "read_ids"]

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def is_run_id(text: str) -> bool:
    """Whether ``text`` is a Tallyfy run ID: 32 lowercase hexadecimal characters."""
    return _RUN_ID.fullmatch(text) is not None


def id_key(run_id: str) -> int:
    """The compact form of a run ID: its value as an integer (``int(run_id, 16)``).

    A job keeps one per run it has met, so a million runs cost a few tens of megabytes;
    ``f"{key:032x}"`` is the ID again. The ID is not validated here.
    """
    return int(run_id, 16)


def read_ids(lines: Iterable[str], *, source: str) -> Iterator[str]:
    """Run IDs from lines of text, one a line; blank lines and ``#`` comments are skipped.

    Args:
        lines: the text, line by line.
        source: the file's name, for error messages.

    Raises:
        ConfigError: a line that is not a run ID, naming the file and line.
    """
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not is_run_id(text):
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise ConfigError(
                f"{source} line {number}: {shown!r} is not a run ID "
                "(32 lowercase hexadecimal characters)"
            )
        yield text
