"""Wires the subcommands together and turns user errors into one line and exit code 2."""

from __future__ import annotations

import functools
import gc
import sys

import typer
import typer.main

from moecache_cli import (calibrate, checkpoint, compare, pack, record, run, simulate, traces_import, traces_info,
                          traces_stats, traces_synth)
from traces.errors import MoecacheError

try:  # recent Typer vendors its own click; older versions use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click.exceptions import ClickException

app = typer.Typer(
    name="moecache",
    help="Record, simulate and run expert caching for Mixture-of-Experts models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
traces_app = typer.Typer(help="Import, inspect, analyse and synthesise routing traces.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Make local checkpoints to try moecache without downloading a model.",
                             no_args_is_help=True)

app.command("record")(record.command)
app.command("simulate")(simulate.command)
app.command("run")(run.command)
app.command("compare")(compare.command)
app.command("pack")(pack.command)
app.command("calibrate")(calibrate.command)
app.add_typer(traces_app, name="traces")
app.add_typer(checkpoint_app, name="checkpoint")
traces_app.command("import")(traces_import.command)
traces_app.command("info")(traces_info.command)
traces_app.command("stats")(traces_stats.command)
traces_app.command("synth")(traces_synth.command)
checkpoint_app.command("tiny")(checkpoint.tiny)


TYPER_INTERRUPTED = 130  # Typer 0.29 turns Ctrl-C during a command into this exit code (earlier ones raise Abort)
METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "text": "TEXT", "integer": "INTEGER",
            "path": "PATH"}


def _value_name(param) -> str:
    """The bare type name of a parameter's value: Typer 0.29 keeps the annotation (`display_type`), earlier
    Typers a click type (`type.name`); both print it as `<str>` in the type column."""
    if hasattr(param, "display_type"):
        return str(param.display_type(None)).strip("<>").removeprefix("list[").removesuffix("]")
    return param.type.name


def _tidy_help(command) -> None:
    """Help shows flags as flags and values as TEXT, INTEGER, NUMBER or PATH rather than Python annotations
    (`<bool>`, `<list[str]>`); `--help` too, which click makes once per command and keeps."""
    help_option = command.get_help_option(command.context_class(command))
    if help_option is not None:
        help_option.metavar = ""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            bare = _value_name(param)
            param.metavar = METAVARS.get(bare, bare.upper())
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


@functools.cache
def cli():
    """The click command tree of the app, built once, with tidy help."""
    command = typer.main.get_command(app)
    _tidy_help(command)
    return command


def fail(message: str) -> int:
    print(f"moecache: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        result = cli().main(args=argv, prog_name="moecache", standalone_mode=False)
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return fail("interrupted")
    except MoecacheError as exc:
        return fail(str(exc))
    except OSError as exc:  # disk full, permission denied, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    if result == TYPER_INTERRUPTED:
        return fail("interrupted")
    return result if isinstance(result, int) else 0


def console() -> int:
    """The `moecache` script: `main`, with what exists before and after it frozen out of the cyclic collector,
    since it lives until the process ends. The collections during a command and the full one at exit then
    skip the imported libraries' objects (numba's registries above all): 0.03 s of `--help`, 0.15 s of a
    small `simulate`. Not in `main`, which tests call many times in one process."""
    gc.freeze()
    try:
        return main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    sys.exit(console())
