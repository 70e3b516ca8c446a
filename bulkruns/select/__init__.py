"""Selection: which runs a job changes, handed to its workers as they are found.

By query (``sweeps``, over ``pages``) or given up front (``pinned``); either way through
the ``feed``'s outlet, with its coverage reported.
"""

from bulkruns.select.feed import Coverage, Outlet, feed
from bulkruns.select.ignored import check_filters
from bulkruns.select.pages import Fetch, list_pages
from bulkruns.select.pinned import pin, read_plan, undo_work
from bulkruns.select.sweeps import Sweeper

__all__ = [
    "Coverage",
    "Fetch",
    "Outlet",
    "Sweeper",
    "check_filters",
    "feed",
    "list_pages",
    "pin",
    "read_plan",
    "undo_work",
]
