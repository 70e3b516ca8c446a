"""The shapes a sandbox's rate limit can take: one :class:`Limit` per window, and its spec.

Tallyfy's published limits disagree, so the sandbox can hold any mix of them at once:
rolling windows of any length (600 a minute, ~140 per 10 s), a Laravel-style fixed window
that resets all at once and announces itself in headers, a tighter budget for GETs
(~12 per 5 s), an organisation's hourly cap with Tallyfy's own message, a penalty of
refusals after a 429 ("throttled for a few seconds"), and an edge proxy whose 429s are an
HTML page. A limit is written in Python or as a one-line spec for the command line::

    Limit(requests=12, seconds=5, gets_only=True)        # "12/5s get"
    Limit.parse("1000/1h fixed hourly")                  # the organisation's cap
    Limit.parse("140/10s html no-retry-after")           # an edge proxy in front

The spec is ``REQUESTS/DURATION`` (``10s``, ``5min``, ``1h``, or bare seconds) followed
by any of the words in :data:`SPEC_WORDS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["HOURLY_MESSAGE", "SPEC_WORDS", "TOO_MANY_ATTEMPTS", "Limit"]

TOO_MANY_ATTEMPTS = "Too Many Attempts."
"""The message of Laravel's throttle, which Tallyfy's 429s carry."""

# Tallyfy's wording is known only as far as "You've reached the hourly limit…" (its
# per-organisation caps); the rest of the sentence is the sandbox's.
HOURLY_MESSAGE = "You've reached the hourly limit of API requests for this organization."
"""The message of an organisation's hourly cap (``hourly``)."""

SPEC_WORDS = {
    "rolling": "a rolling window: REQUESTS in any DURATION (the default)",
    "fixed": "a fixed window aligned to multiples of DURATION, reset all at once",
    "get": "counts GET requests only: a budget for reads on top of the others",
    "penalty=S": "once it refuses, every request is refused for S seconds",
    "quiet": "sends no X-RateLimit-* headers",
    "html": "its 429s are an edge proxy's HTML page, not Tallyfy's JSON",
    "no-retry-after": "its 429s carry no Retry-After",
    "hourly": f"its 429s say {HOURLY_MESSAGE!r}",
    "name=NAME": "what the stats call it (default: its spec)",
}
"""The words a limit's spec may hold after ``REQUESTS/DURATION``, with their meaning."""

_UNITS = {"": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0}
_RATE = re.compile(r"(\d+)/(\d+(?:\.\d+)?)(s|min|h)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One limit of the sandbox: ``requests`` per ``seconds``, and how it answers.

    A request is served only if every limit it counts on has room; a refused request counts
    on none of them.

    Attributes:
        requests: requests accepted per window.
        seconds: the length of the window.
        kind: ``"rolling"`` (at most ``requests`` in any ``seconds``) or ``"fixed"``
            (windows aligned to multiples of ``seconds`` on the clock, each counting from 0:
            Tallyfy's hourly limit "resets on the hour (not rolling window)").
        gets_only: count GET requests only (a read budget); others pass it uncounted.
        penalty: once this limit refuses a request, every request of the same token is
            refused for this many seconds (and Retry-After says so); 0 = none.
        headers: announce ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` on every
            answer (the limit with the fewest left speaks when several do), and
            ``X-RateLimit-Reset`` (epoch seconds) on this limit's 429s.
        retry_after: this limit's 429s carry ``Retry-After`` (whole seconds).
        html: this limit is an edge proxy's: its 429s are an HTML page, like Cloudflare's,
            and carry none of the API's headers but its own.
        hourly: its 429s say :data:`HOURLY_MESSAGE` instead of :data:`TOO_MANY_ATTEMPTS`.
        name: what the stats call it; empty = its spec.
    """

    requests: int
    seconds: float
    kind: Literal["rolling", "fixed"] = "rolling"
    gets_only: bool = False
    penalty: float = 0.0
    headers: bool = True
    retry_after: bool = True
    html: bool = False
    hourly: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise ValueError(f"a limit's requests must be a whole number, not {self.requests!r}")
        if self.requests < 1:
            raise ValueError("a limit's requests must be at least 1 (leave the limit out instead)")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError("a limit's seconds must be a positive number")
        if self.kind not in ("rolling", "fixed"):
            raise ValueError(f"a limit's kind must be 'rolling' or 'fixed', not {self.kind!r}")
        if not (math.isfinite(self.penalty) and self.penalty >= 0):
            raise ValueError("a limit's penalty must be 0 or more seconds")
        if any(c.isspace() for c in self.name):
            raise ValueError(f"a limit's name must be one word, not {self.name!r}")

    @property
    def label(self) -> str:
        """Its name, or its spec: what the stats count its refusals under."""
        return self.name or self.spec()

    @property
    def message(self) -> str:
        """The message of its JSON 429s."""
        return HOURLY_MESSAGE if self.hourly else TOO_MANY_ATTEMPTS

    def spec(self) -> str:
        """The one-line spec that :meth:`parse` reads back into this limit."""
        words = [f"{self.requests}/{_duration(self.seconds)}"]
        words += [
            word
            for word, on in (
                ("fixed", self.kind == "fixed"),
                ("get", self.gets_only),
                (f"penalty={self.penalty:g}", self.penalty > 0),
                ("quiet", not self.headers),
                ("html", self.html),
                ("no-retry-after", not self.retry_after),
                ("hourly", self.hourly),
                (f"name={self.name}", bool(self.name)),
            )
            if on
        ]
        return " ".join(words)

    @classmethod
    def parse(cls, spec: str) -> Limit:
        """The limit a spec such as ``"12/5s get"`` or ``"1000/1h fixed hourly"`` describes.

        Raises:
            ValueError: a spec that does not read, with what it should look like.
        """
        words = spec.split()
        rate = _RATE.fullmatch(words[0]) if words else None
        if rate is None:
            raise ValueError(
                f"{spec!r} is not REQUESTS/DURATION[ WORDS]: write e.g. '600/60s' or '12/5s get'"
            )
        requests, amount, unit = rate.groups()
        switches: set[str] = set()
        penalty, name = 0.0, ""
        for word in words[1:]:
            key, _, value = word.partition("=")
            if word in _SWITCHES:
                switches.add(word)
            elif key == "penalty" and value:
                try:
                    penalty = float(value)
                except ValueError:
                    raise ValueError(f"penalty={value} is not a number of seconds") from None
            elif key == "name" and value:
                name = value
            else:
                known = ", ".join(SPEC_WORDS)
                raise ValueError(f"{word!r} is not a word a limit takes; it takes: {known}")
        if {"rolling", "fixed"} <= switches:
            raise ValueError(f"{spec!r} says both rolling and fixed: keep one")
        return cls(
            requests=int(requests),
            seconds=float(amount) * _UNITS[unit or ""],
            kind="fixed" if "fixed" in switches else "rolling",
            gets_only="get" in switches,
            penalty=penalty,
            headers="quiet" not in switches,
            retry_after="no-retry-after" not in switches,
            html="html" in switches,
            hourly="hourly" in switches,
            name=name,
        )


_SWITCHES = frozenset({"rolling", "fixed", "get", "quiet", "html", "no-retry-after", "hourly"})


def _duration(seconds: float) -> str:
    for unit in ("h", "min"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
