"""The words at the foot of each command's ``--help``: examples, the environment variables
it reads, how an age is written, and its exit codes.

Click rewraps help text by paragraph; a paragraph that starts with ``\\b`` is kept as
written, which the tables below rely on.
"""

from __future__ import annotations

__all__ = ["AGES", "ROOT", "epilog"]

AGES = "30min, 12h, 90d, 2w, 6mo, 1y or 45s; a bare m is refused (write min or mo)"
"""The age units a WHEN takes, as the help words them."""

_EXAMPLES = {
    "list": (
        "bulkruns list --status complete --updated-before 90d --count",
        "bulkruns list --status complete --ids > complete.txt",
        "bulkruns list --q 'Q3 review' | jq -r .name",
    ),
    "archive": (
        "bulkruns archive --status complete --updated-before 180d",
        "bulkruns archive --status complete --dry-run --log plan.jsonl",
        "bulkruns archive --ids-file stale.txt --quiet --log-dir /var/log/bulkruns",
    ),
    "activate": (
        "bulkruns activate --checklist-id 3b1e… --created-before 2025-01-31",
        "bulkruns activate --ids-file restore.txt",
        "bulkruns activate --all --max-wait 2h    # every archived run; wait out an hourly cap",
    ),
    "update": (
        "bulkruns update --status active --q 'Q3 review' --set starred=true",
        'bulkruns update --ids-file runs.txt --set \'users=["u1","u2"]\' --dry-run',
    ),
    "delete": (
        "bulkruns delete --updated-before 1y --yes",
        "bulkruns delete --status complete --archive-first --dry-run --log plan.jsonl",
    ),
    "resume": (
        "bulkruns resume bulkruns-archive-20261123T044514Z.jsonl",
        "bulkruns resume plan.jsonl --dry-run",
        "bulkruns resume job.jsonl --rate 5 --timeout 20",
    ),
    "undo": (
        "bulkruns undo bulkruns-archive-20261123T044514Z.jsonl",
        "bulkruns undo job.jsonl --log-dir /var/log/bulkruns --quiet",
    ),
    "report": (
        "bulkruns report bulkruns-archive-20261123T044514Z.jsonl",
        "bulkruns report job.jsonl --json | jq .failed",
        "bulkruns report job.jsonl --failed-ids > retry.txt",
    ),
    "rethrottle": (
        "bulkruns rethrottle --rate 2          # leave room for another integration",
        "bulkruns rethrottle --rate 10 --org ORG",
    ),
    "sandbox": (
        "bulkruns sandbox --runs 5000 --latency 40 --jitter 20",
        "bulkruns sandbox --rate 0 --limit '50/1s penalty=2' --cotenant 15",
        "bulkruns sandbox --port 0 --keep-unsent-assignees --status-archived lists-archived",
    ),
}

_CONNECTION = (
    ("TALLYFY_ORG_ID", "the organisation (--org)"),
    ("TALLYFY_ACCESS_TOKEN", "the access token (or --token-file; never a flag)"),
    ("TALLYFY_BASE_URL", "the API root (--base-url)"),
    ("HTTPS_PROXY, NO_PROXY", "the proxy for https://, and the hosts reached without it"),
    ("SSL_CERT_FILE", "a PEM bundle of the CAs to trust (--ca-file)"),
)
_LOCK = (("XDG_STATE_HOME", "where the lock of one job per organisation lives"),)

_JOB_EXITS = (
    (0, "every item done"),
    (1, "finished, but some items failed, or the selection could not be proven complete"),
    (
        2,
        "usage, configuration or input error, another job holds the lock, or Tallyfy ignores "
        "the filter: nothing changed",
    ),
    (
        3,
        "aborted (token refused, failure budget, listing failed, a wait past --max-wait): "
        "resumable",
    ),
    (130, "interrupted by Ctrl-C or SIGTERM: resumable"),
)
_LIST_EXITS = (
    (0, "the matching runs were printed"),
    (1, "the listing kept moving while it was read: some runs may be missing"),
    (2, "usage, configuration or input error: nothing was sent"),
    (3, "listing failed (token refused, Tallyfy unreachable)"),
    (130, "interrupted"),
)
_REPORT_EXITS = (
    (0, "the log was read"),
    (2, "usage error, or a log that is missing or cannot be read"),
)
_RETHROTTLE_EXITS = (
    (0, "the running job paces at the new rate"),
    (1, "the running job did not answer"),
    (2, "usage error, or no job is running for the organisation"),
)
_SANDBOX_EXITS = (
    (0, "stopped by Ctrl-C or SIGTERM"),
    (2, "usage error, or the address cannot be listened on"),
)
_LOCATION = (
    ("TALLYFY_ORG_ID", "the organisation (--org)"),
    ("TALLYFY_BASE_URL", "the API root (--base-url)"),
)

_SELECTING = ("list", "archive", "activate", "update", "delete")


def _table(rows: tuple[tuple[object, str], ...]) -> str:
    width = max(len(str(key)) for key, _ in rows) + 2
    return "\b\n" + "\n".join(f"  {key!s:<{width}}{text}" for key, text in rows)


def epilog(command: str) -> str:
    """The foot of ``bulkruns COMMAND --help``."""
    parts = ["Examples:", "\b\n" + "\n".join(f"  {line}" for line in _EXAMPLES[command])]
    if command in _SELECTING:
        parts.append(
            "WHEN is an ISO date (2025-01-31) or date-time (2025-01-31T18:00:00Z; UTC unless "
            f"it names a zone), or an age before now: {AGES}."
        )
    if command == "report":
        parts.append("Environment: none; the log names the organisation and the server.")
    elif command == "sandbox":
        parts.append("Environment: none; it prints the exports a client needs.")
    elif command == "rethrottle":
        parts += ["Environment:", _table(_LOCATION + _LOCK)]
    else:
        parts += ["Environment:", _table(_CONNECTION + (_LOCK if command != "list" else ()))]
    exits = {
        "list": _LIST_EXITS,
        "report": _REPORT_EXITS,
        "rethrottle": _RETHROTTLE_EXITS,
        "sandbox": _SANDBOX_EXITS,
    }
    exits_of = exits.get(command, _JOB_EXITS)
    parts += ["Exit codes:", _table(exits_of)]
    return "\n\n".join(parts)


ROOT = "\n\n".join(
    [
        "Global options may also follow the command. Each command's --help shows examples, "
        "the environment it reads and its exit codes.",
        "Shell completion (bash; zsh and fish alike with zsh_source, fish_source):",
        '\b\n  eval "$(_BULKRUNS_COMPLETE=bash_source bulkruns)"',
    ]
)
"""The foot of ``bulkruns --help``."""
