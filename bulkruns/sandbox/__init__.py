"""A local server that behaves like Tallyfy's run endpoints, for rehearsals and tests.

    async with Sandbox(SandboxConfig(runs=1000)) as sandbox:
        async with Client(org=sandbox.org, token=sandbox.token, base_url=sandbox.base_url) as c:
            page = await c.list_runs([("status", "active")])

It serves seeded runs under ``/api/organizations/{org}/runs…`` (and without ``/api``), with
Tallyfy's envelopes, errors, pagination quirks and rate limits of every shape Tallyfy may
have (rolling and fixed windows, a GET budget, an hourly cap, penalties, an edge proxy's
HTML 429s, another client on the same budget), and can inject latency and faults.
``GET /_sandbox/stats`` reports what it served, refused and changed.
Modules: ``config`` (settings), ``shape`` (the limits), ``rules`` (what the endpoints
accept), ``seed`` (the seeded runs), ``store`` (runs, filters, pages, changes), ``views``
(the store's sorted list views), ``limits`` (rate limiter, faults), ``others`` (other people
at work meanwhile), ``state`` (live state and stats), ``app`` (HTTP handlers), ``server``
(serving).
"""

from bulkruns.sandbox.app import make_app, state_of
from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.server import Sandbox
from bulkruns.sandbox.shape import Limit
from bulkruns.sandbox.state import SandboxState

__all__ = ["Limit", "Sandbox", "SandboxConfig", "SandboxState", "make_app", "state_of"]
