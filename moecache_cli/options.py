"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from traces.errors import MoecacheError
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


UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
         "T": 1000**4, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(text: str | None, option: str) -> int | None:
    """'4GiB', '512MB', '1.5G' or a byte count to bytes; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise MoecacheError(f"{option} {text!r}: expected a size such as 4GiB, 512MB or a number of bytes")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])
