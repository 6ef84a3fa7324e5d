"""`moecache pack`: rewrite a checkpoint's experts as one aligned block each, for one read per expert."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Quiet


def command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder (safetensors).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the packed checkpoint.",
                                      show_default=False)],
    quiet: Quiet = False,
) -> None:
    """Rewrite a checkpoint's experts as one aligned block each, for one read per expert.

    Each expert becomes one contiguous 4 KiB-aligned block (gate, up, down together) with an index; everything
    else is kept as is. Written atomically: a failure leaves no folder.

    Example: [bold]moecache pack ./olmoe-like -o ./olmoe-packed[/]
    """
    from engine.pack import pack_checkpoint

    with render.progress_bar("packing", "experts", enabled=not quiet) as update:
        layout = pack_checkpoint(checkpoint, out, progress=update)
    render.key_values("packed", [("folder", out), ("experts", layout.num_objects),
                                 ("block", render.human_bytes(layout.format.slot_bytes)),
                                 ("expert data", render.human_bytes(layout.num_objects * layout.format.slot_bytes))])
