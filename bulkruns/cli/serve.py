"""``bulkruns sandbox``: a local imitation of Tallyfy's run endpoints, served until Ctrl-C."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from typing import TYPE_CHECKING

import click

from bulkruns.api import is_loopback_host
from bulkruns.cli.helptext import epilog
from bulkruns.cli.root import InputError, finite

if TYPE_CHECKING:
    from bulkruns.sandbox import Limit, SandboxConfig

__all__ = ["sandbox"]

# SandboxConfig's fields whose flag is not named after them (the others: --field-name).
_FLAGS = {
    "rate_limit": "--rate",
    "limits": "--limit",
    "links_style": "--links",
    "reset_rate": "--reset",
    "stall_rate": "--stall",
    "ignored_filters": "--ignore-filter",
}


def _name_the_flag(message: str) -> str:
    """A SandboxConfig error as the command says it: ``--fail-before must …``, not the field."""
    field, space, rest = message.partition(" ")
    if not (field.isidentifier() and rest.startswith("must ")):
        return message
    return _FLAGS.get(field, "--" + field.replace("_", "-")) + space + rest


def _limits(
    ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]
) -> tuple[Limit, ...]:
    """A click callback: each ``--limit`` spec read into a Limit."""
    if not specs:
        return ()
    from bulkruns.sandbox import Limit  # aiohttp's server side: see sandbox()

    try:
        return tuple(Limit.parse(spec) for spec in specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _describe_limits(config: SandboxConfig) -> str:
    """The limits in force, as the first line says them."""
    said = [f"{config.rate_limit} requests per {config.window:g} s"] if config.rate_limit else []
    said += [limit.spec() for limit in config.limits]
    if not said:
        return "no rate limit"
    if config.cotenant:
        said.append(f"another client taking {config.cotenant:g} requests/s of it")
    return ", ".join(said)


@click.command("sandbox", epilog=epilog("sandbox"))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to bind (0 = any free).",
)
@click.option("--runs", default=1000, show_default=True, help="Runs to seed.")
@click.option("--seed", default=1, show_default=True, help="Seed of the generated runs.")
@click.option(
    "--rate",
    default=600.0,
    show_default=True,
    help="Rate limit in requests per minute, per token, with a burst rule (0 = none of it).",
    callback=finite,
)
@click.option(
    "--window",
    default=60.0,
    show_default=True,
    callback=finite,
    help="Rolling window of the limit, seconds.",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="SPEC",
    callback=_limits,
    help="Another limit on top of --rate, as REQUESTS/DURATION and words: '12/5s get', "
    "'1000/1h fixed hourly', '140/10s html no-retry-after', '100/1min penalty=5 quiet'. "
    "Repeatable.",
)
@click.option(
    "--cotenant",
    default=0.0,
    callback=finite,
    show_default=True,
    metavar="R",
    help="Another client's requests per second, taken from the same limits (GET budgets aside).",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    callback=finite,
    help="Added latency, milliseconds.",
)
@click.option(
    "--jitter",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    callback=finite,
    help="Latency jitter (±), milliseconds.",
)
@click.option(
    "--fail-before",
    default=0.0,
    callback=finite,
    help="Share of mutations answered 503, unapplied.",
)
@click.option(
    "--fail-after", default=0.0, callback=finite, help="Share of mutations answered 500, applied."
)
@click.option(
    "--reset", "reset_rate", default=0.0, callback=finite, help="Share of connections dropped."
)
@click.option("--stall", "stall_rate", default=0.0, callback=finite, help="Share of requests held.")
@click.option(
    "--stall-seconds",
    default=30.0,
    show_default=True,
    callback=finite,
    help="How long a stall lasts.",
)
@click.option(
    "--delete-unarchived-status",
    type=click.Choice(["422", "404"]),
    default="422",
    show_default=True,
    help="Status of a permanent delete of a run not archived.",
)
@click.option(
    "--total-pages-quirk/--no-total-pages-quirk",
    default=True,
    show_default=True,
    help="Compute total_pages with page size 10, as Tallyfy has been seen to.",
)
@click.option(
    "--links",
    type=click.Choice(["object", "list", "null"]),
    default="object",
    show_default=True,
    help="Shape of meta.pagination.links.",
)
# Where Tallyfy's server departs from its docs: as Tallyfy does by default where its own
# clients record what it does (see SandboxConfig).
@click.option(
    "--strip-unsent-assignees/--keep-unsent-assignees",
    default=True,
    show_default=True,
    help="An update detaches the users or groups it is not sent, as Tallyfy's does.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    help="Most runs a list page holds, whatever per_page asks (default: as asked).",
)
@click.option(
    "--per-page-reported",
    type=click.Choice(["served", "asked"]),
    default="served",
    show_default=True,
    help="What meta.pagination.per_page says of a page smaller than asked.",
)
@click.option(
    "--status-archived",
    type=click.Choice(["lists-archived", "ignored", "matches-none"]),
    default="ignored",
    show_default=True,
    help="How status=archived reads: as archived=only, as no filter, or as no run.",
)
@click.option(
    "--ignore-filter",
    "ignored_filters",
    multiple=True,
    metavar="NAME",
    help="A list parameter the server ignores as unknown (status, type…); repeatable.",
)
@click.option(
    "--list-omits",
    "list_omits",
    multiple=True,
    metavar="FIELD",
    help="A run field list pages leave out (reading the run shows it); repeatable.",
)
@click.option(
    "--launches-per-list",
    type=click.IntRange(min=0),
    default=0,
    help="Runs other people launch after each list page served.",
)
@click.option(
    "--renames-per-list",
    type=click.IntRange(min=0),
    default=0,
    help="Runs other people rename after each list page served.",
)
@click.option(
    "--completions-per-list",
    type=click.IntRange(min=0),
    default=0,
    help="Active runs other people complete after each list page served.",
)
@click.option("--token", help="Token to accept (default: a random one).")
@click.option("--org", "sandbox_org", default="sandbox-org", show_default=True, help="Org ID.")
@click.pass_context
def sandbox(
    ctx: click.Context,
    host: str,
    port: int,
    runs: int,
    seed: int,
    rate: float,
    window: float,
    limits: tuple[Limit, ...],
    cotenant: float,
    latency: float,
    jitter: float,
    fail_before: float,
    fail_after: float,
    reset_rate: float,
    stall_rate: float,
    stall_seconds: float,
    delete_unarchived_status: str,
    total_pages_quirk: bool,
    links: str,
    strip_unsent_assignees: bool,
    page_size: int | None,
    per_page_reported: str,
    status_archived: str,
    ignored_filters: tuple[str, ...],
    list_omits: tuple[str, ...],
    launches_per_list: int,
    renames_per_list: int,
    completions_per_list: int,
    token: str | None,
    sandbox_org: str,
) -> None:
    """Serve a local imitation of Tallyfy's run endpoints until Ctrl-C or SIGTERM.

    It binds 127.0.0.1 unless --host says otherwise: it is a rehearsal server, with a
    printed token, not something to expose.
    """
    if rate < 0:
        raise InputError("--rate must be 0 (no limit) or a number of requests per minute")
    # --rate is per minute whatever the window, so a shorter window keeps the same pace.
    rate_limit = 0 if rate == 0 else max(1, round(rate * window / 60.0))
    # Imported here: aiohttp's server side is the slowest import, and only this command uses it.
    from bulkruns.sandbox import SandboxConfig

    try:
        config = SandboxConfig(
            org=sandbox_org,
            runs=runs,
            seed=seed,
            rate_limit=rate_limit,
            window=window,
            limits=limits,
            cotenant=cotenant,
            latency=latency / 1000.0,
            jitter=jitter / 1000.0,
            fail_before=fail_before,
            fail_after=fail_after,
            reset_rate=reset_rate,
            stall_rate=stall_rate,
            stall_seconds=stall_seconds,
            delete_unarchived_status=int(delete_unarchived_status),
            total_pages_quirk=total_pages_quirk,
            links_style=links,
            strip_unsent_assignees=strip_unsent_assignees,
            page_size=page_size,
            per_page_reported=per_page_reported,
            status_archived=status_archived,
            ignored_filters=ignored_filters,
            list_omits=list_omits,
            launches_per_list=launches_per_list,
            renames_per_list=renames_per_list,
            completions_per_list=completions_per_list,
        )
        if token is not None:
            config = dataclasses.replace(config, token=token)
    except ValueError as exc:
        raise InputError(f"sandbox: {_name_the_flag(str(exc))}") from None
    if not is_loopback_host(host):
        click.echo(
            f"warning: serving on {host}, not a loopback address: anyone who can reach it "
            "can read the token below",
            err=True,
        )
    try:
        asyncio.run(_serve(config, host, port))
    except OSError as exc:  # the port is taken, the address is not ours…
        raise InputError(f"sandbox: cannot listen on {host}:{port}: {exc.strerror}") from None


async def _serve(config: SandboxConfig, host: str, port: int) -> None:
    from bulkruns.sandbox import Sandbox  # aiohttp's server side: see sandbox()

    if config.runs >= 20_000:
        click.echo(f"seeding {config.runs} runs…", err=True)
    async with Sandbox(config, host=host, port=port) as server:
        click.echo(
            f"bulkruns sandbox: {config.runs} runs, {_describe_limits(config)}; Ctrl-C to stop\n"
            f"  base URL      {server.base_url}\n"
            f"  organisation  {server.org}\n"
            f"  token         {server.token}\n"
            f"  stats         {server.root_url}/_sandbox/stats\n"
            f"export TALLYFY_BASE_URL={server.base_url}\n"
            f"export TALLYFY_ORG_ID={server.org}\n"
            f"export TALLYFY_ACCESS_TOKEN={server.token}"
        )
        sys.stdout.flush()  # a parent process may be waiting for these lines on a pipe
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
    click.echo("sandbox stopped", err=True)
