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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
from click.core import ParameterSource

from bulkruns.cli.inputs import Connection, read_connection
from bulkruns.cli.session import interrupt_on_sigterm
from bulkruns.cli.summary import EXIT_ABORTED, EXIT_INTERRUPTED, ExitError
from bulkruns.errors import BulkrunsError, ConfigError

__all__ = ["GlobalOptions", "InputError", "connection", "finite", "guarded", "main"]

# Settings whose flag is not named after them.
_FLAGS = {"archived": "--archived-style"}


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The options given before the command, as ``ctx.obj``."""

    base_url: str | None
    org: str | None
    token_file: Path | None


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url",
    envvar="TALLYFY_BASE_URL",
    metavar="URL",
    help="Tallyfy API root [env TALLYFY_BASE_URL; default https://go.tallyfy.com/api].",
)
@click.option(
    "--org", envvar="TALLYFY_ORG_ID", metavar="ORG", help="Organisation ID [env TALLYFY_ORG_ID]."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the access token (else env TALLYFY_ACCESS_TOKEN).",
)
@click.pass_context
def main(
    ctx: click.Context, base_url: str | None, org: str | None, token_file: Path | None
) -> None:
    """Archive, restore, update or delete thousands of Tallyfy runs at once."""
    ctx.obj = GlobalOptions(base_url=base_url, org=org, token_file=token_file)


def connection() -> Connection:
    """Organisation, token and base URL: flags over environment over defaults."""
    root = click.get_current_context().find_root()
    g: GlobalOptions = root.obj
    # The resume and undo commands shown later repeat the global options typed here.
    flags: list[str] = []
    for name, value in (("base_url", g.base_url), ("org", g.org), ("token_file", g.token_file)):
        if value is not None and root.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            # a file's absolute path, so the command works from any folder (cron's is $HOME)
            shown = os.path.abspath(value) if isinstance(value, Path) else value
            flags += [f"--{name.replace('_', '-')}", shown]
    return read_connection(
        org=g.org, base_url=g.base_url, token_file=g.token_file, flags=tuple(flags)
    )


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
