"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from traces.model_specs import available_specs

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output trace file (.parquet); written atomically.")]
Seed = Annotated[int, typer.Option(help="Seed: the same inputs and seed give the same output.")]
SPEC_HELP = f"Model spec: one of {', '.join(available_specs())}, or a .toml path."
ModelSpecName = Annotated[str, typer.Option("--model", "-m", help=SPEC_HELP)]
LikeSpec = Annotated[str, typer.Option("--like", help=SPEC_HELP)]
TraceFile = Annotated[Path, typer.Argument(help="A moecache trace (.parquet).", show_default=False)]


def command_line() -> str:
    """The command as typed, stored in outputs so that they can be reproduced."""
    return shlex.join(["moecache", *sys.argv[1:]])
