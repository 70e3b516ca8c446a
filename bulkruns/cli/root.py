"""The root of the command line: the ``bulkruns`` group, its global options, and how every
error becomes one line and an exit code.

Every user mistake ends as one line, ``bulkruns: error: …``, on standard error with exit
status 2, before any request is sent; see :mod:`bulkruns.cli.summary` for the other exit
codes.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
from click.core import ParameterSource

from bulkruns.api import DEFAULT_BASE_URL, normalise_base_url
from bulkruns.api.client import VERSION
from bulkruns.cli import helptext
from bulkruns.cli.inputs import Connection, read_connection
from bulkruns.cli.session import interrupt_on_sigterm
from bulkruns.cli.summary import EXIT_ABORTED, EXIT_INTERRUPTED, ExitError
from bulkruns.errors import BulkrunsError, ConfigError

__all__ = [
    "GlobalOptions",
    "InputError",
    "connection",
    "finite",
    "guarded",
    "main",
    "options_after_command",
]

# Settings whose flag is not named after them.
_FLAGS = {"archived": "--archived-style", "read_timeout": "--timeout"}

# The global options, in the order the commands shown repeat them.
_GLOBALS = ("base_url", "org", "token_file", "ca_file")
# Where a command keeps the global options typed after it (ctx.meta is shared).
_AFTER = "bulkruns.global_options_after"


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The options given before the command, as ``ctx.obj``."""

    base_url: str | None
    org: str | None
    token_file: Path | None
    ca_file: Path | None


class InputError(click.ClickException):
    """One clear line and exit status 2: bad usage, configuration or input."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        _print_error(self.format_message())


class _Exit(InputError):
    """One clear line and a given exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        setattr(self, "exit_code", code)  # noqa: B010 - click declares it a class variable


class _Group(click.Group):
    """The root group: a usage mistake is one line (not the usage block) and exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        interrupt_on_sigterm()  # from here on, SIGTERM ends the command as Ctrl-C does
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `bulkruns`: the help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _print_error(f"{exc.format_message()}{where}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            _print_error("aborted")
            sys.exit(EXIT_INTERRUPTED)
        # Without standalone mode, click returns the status a command exited with.
        sys.exit(code if isinstance(code, int) else 0)


def _print_error(message: str) -> None:
    click.echo(f"bulkruns: error: {message}", err=True)


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: refuse ``inf`` and ``nan``, which FloatRange lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep a global option typed after the command, for :func:`connection`."""
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_AFTER, {})[param.name] = value


def _global_options() -> list[tuple[str, str | None, dict[str, Any]]]:
    """The global options: each one's flag, environment variable and settings."""
    path = click.Path(dir_okay=False, path_type=Path)
    return [
        (
            "--base-url",
            "TALLYFY_BASE_URL",
            {
                "metavar": "URL",
                "help": "Tallyfy API root "
                "[env TALLYFY_BASE_URL; default https://go.tallyfy.com/api].",
            },
        ),
        (
            "--org",
            "TALLYFY_ORG_ID",
            {"metavar": "ORG", "help": "Organisation ID [env TALLYFY_ORG_ID]."},
        ),
        (
            "--token-file",
            None,
            {
                "type": path,
                "help": "File holding the access token (else env TALLYFY_ACCESS_TOKEN).",
            },
        ),
        (
            "--ca-file",
            "SSL_CERT_FILE",
            {
                "type": path,
                "help": "PEM bundle of the CAs to trust instead of the system's, such as those "
                "of a proxy that inspects TLS [env SSL_CERT_FILE].",
            },
        ),
    ]


def options_after_command(*, only: tuple[str, ...] | None = None) -> list[click.Parameter]:
    """The global options as a command takes them after its name: no environment variable
    (the root reads it), and kept aside for :func:`connection`, where they win over the
    root's values. ``only`` keeps those flags alone (a command that needs no token)."""
    return [
        click.Option([flag], expose_value=False, callback=_remember, **settings)
        for flag, _, settings in _global_options()
        if only is None or flag in only
    ]


def _root_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for flag, envvar, settings in reversed(_global_options()):
        function = click.option(flag, envvar=envvar, **settings)(function)
    return function


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=helptext.ROOT,
)
@click.version_option(VERSION, "--version", prog_name="bulkruns", message="%(prog)s %(version)s")
@_root_options
@click.pass_context
def main(
    ctx: click.Context,
    base_url: str | None,
    org: str | None,
    token_file: Path | None,
    ca_file: Path | None,
) -> None:
    """Archive, restore, update or delete thousands of Tallyfy runs at once."""
    ctx.obj = GlobalOptions(base_url=base_url, org=org, token_file=token_file, ca_file=ca_file)


def connection(*, timeout: float | None = None, log: Mapping[str, Any] | None = None) -> Connection:
    """Organisation, token, base URL and CA bundle: flags (before or after the command)
    over environment over defaults; ``timeout`` is the command's ``--timeout``.

    A command that continues or undoes a job passes its log's job record as ``log``: the
    organisation and base URL it names are used when none is given (one that is given
    must match it, which the job checks).

    Raises:
        ConfigError: a global option given both before and after the command, or what
            :func:`~bulkruns.cli.inputs.read_connection` refuses.
    """
    values, flags = _global_values()
    for name in ("org", "base_url"):
        recorded = log.get(name) if log is not None else None
        if values[name] is None and isinstance(recorded, str):
            values[name] = recorded
    return read_connection(**values, timeout=timeout, flags=tuple(flags))


def destination() -> tuple[str, str]:
    """The organisation and the API root (canonical), as :func:`connection` finds them,
    with no token: for a command that only looks for the organisation's running job.

    Raises:
        ConfigError: no organisation, or a base URL the client would refuse.
    """
    values, _ = _global_values()
    org = (values["org"] or "").strip()
    if not org:
        raise ConfigError(
            "no organisation given: pass --org ORG or set TALLYFY_ORG_ID "
            "to your Tallyfy Organization ID"
        )
    return org, normalise_base_url(values["base_url"] or DEFAULT_BASE_URL)


def _global_values() -> tuple[dict[str, Any], list[str]]:
    """The global options given before or after the command (or by the environment), and
    those typed on the command line as flags, to repeat in the commands shown later."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    g: GlobalOptions = root.obj
    after: dict[str, Any] = ctx.meta.get(_AFTER, {})
    values: dict[str, Any] = {}
    flags: list[str] = []
    for name in _GLOBALS:
        flag = f"--{name.replace('_', '-')}"
        before = root.get_parameter_source(name) == ParameterSource.COMMANDLINE
        if before and name in after:
            raise ConfigError(f"{flag} is given twice, before and after the command: give it once")
        value = values[name] = after.get(name, getattr(g, name))
        if value is not None and (before or name in after):
            # a file's absolute path, so the command works from any folder (cron's is $HOME)
            flags += [flag, os.path.abspath(value) if isinstance(value, Path) else value]
    return values, flags


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError an exception is, or holds in its (nested) exception groups."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


def guarded(function: Callable[..., int]) -> Callable[..., None]:
    """Run a command body; map its errors to one line and an exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = function(*args, **kwargs)
        except ExitError as exc:
            raise _Exit(exc.message, exc.code) from None
        except ConfigError as exc:
            raise InputError(_name_the_flag(exc)) from None
        except BulkrunsError as exc:  # an API or transport error outside a job
            raise _Exit(str(exc), EXIT_ABORTED) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside a job's own handling
            raise _Exit("interrupted", EXIT_INTERRUPTED) from None
        except Exception as exc:
            # The system refused something the library did not expect to fail (a full
            # disk, a file size limit…): one line, never a traceback.
            error = _os_error(exc)
            if error is None:
                raise
            where = f"{error.filename}: " if error.filename else ""
            raise InputError(f"{where}{error.strerror or error}") from None
        click.get_current_context().exit(code)

    return wrapper


def _name_the_flag(error: ConfigError) -> str:
    """A setting's error as the command line says it: naming the flag that sets it."""
    message = str(error)
    if error.setting is None or not message.startswith(error.setting + " "):
        return message
    flag = _FLAGS.get(error.setting, "--" + error.setting.replace("_", "-"))
    return f"{flag}{message[len(error.setting) :]}"
