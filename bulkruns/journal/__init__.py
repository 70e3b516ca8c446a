"""The result log: its records (``schema``), the writer, and the reader with the resume
state a log holds."""

from bulkruns.journal.reader import iter_records, ok_items, read_journal
from bulkruns.journal.schema import JOURNAL_VERSION, JournalState
from bulkruns.journal.writer import JournalWriter

__all__ = [
    "JOURNAL_VERSION",
    "JournalState",
    "JournalWriter",
    "iter_records",
    "ok_items",
    "read_journal",
]
