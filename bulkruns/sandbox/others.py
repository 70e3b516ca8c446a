"""Other people at work in the sandbox's organisation while a job lists its runs.

After each list page it serves, the sandbox lets them launch, rename and complete runs,
as many of each as its settings say, deterministically from its seed. Their changes
shift the offset pages as the job's own do: a launch lands on page 1 of the default
newest-first order and pushes every later page back by one, a rename moves a run under
``sort=name``, and a completed run leaves ``status=active``.
"""

from __future__ import annotations

import random
from collections import Counter

from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.seed import renamed
from bulkruns.sandbox.store import RunStore

__all__ = ["OtherPeople"]


class OtherPeople:
    """The organisation's other users, changing runs between the pages a job lists.

    Attributes:
        done: what they did so far: ``launched``, ``renamed`` and ``completed`` runs.
    """

    def __init__(self, config: SandboxConfig, store: RunStore) -> None:
        self._store = store
        self._launches = config.launches_per_list
        self._renames = config.renames_per_list
        self._completions = config.completions_per_list
        self._lists_left = config.others_for_lists
        # Their own stream, so that their work does not depend on the faults rolled.
        self._random = random.Random(config.seed * 6007 + 29)
        self.done: Counter[str] = Counter(dict.fromkeys(("launched", "renamed", "completed"), 0))

    @property
    def busy(self) -> bool:
        """Whether they change anything at all."""
        return bool(self._launches or self._renames or self._completions)

    def act(self) -> None:
        """What they do while one list page is on its way: launch, rename, complete."""
        if self._lists_left is not None:
            if self._lists_left == 0:
                return
            self._lists_left -= 1
        store, rng = self._store, self._random
        for _ in range(self._launches):
            store.launch(rng)
            self.done["launched"] += 1
        for _ in range(self._renames):
            run = store.pick(rng)
            if run is not None:
                store.rename(run["id"], renamed(run["name"], rng))
                self.done["renamed"] += 1
        for _ in range(self._completions):
            run = store.pick(rng, "active")
            if run is not None:
                store.complete(run["id"])
                self.done["completed"] += 1
