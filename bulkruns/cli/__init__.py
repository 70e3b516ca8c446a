"""The ``bulkruns`` command line: click's commands (``commands``, ``serve``) on the root
group (``root``), with what they read (``flags``, ``inputs``), how a job is run for a person
or a cron job (``session``, ``lock``, ``listing``) and what it shows (``output``,
``summary``)."""

from bulkruns.cli.commands import main
from bulkruns.cli.serve import sandbox

main.add_command(sandbox)

__all__ = ["main"]
