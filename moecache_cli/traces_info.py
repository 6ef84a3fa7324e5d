"""`moecache traces info`: what a trace holds and which model made it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json
from traces.reader import open_trace


def command(
    traces: Annotated[list[Path], typer.Argument(help="One or more traces (.parquet).", show_default=False)],
    json_out: Json = False,
) -> None:
    """Print each trace's metadata, size and optional columns (after checking every row).

    Example: [bold]moecache traces info gsm8k.parquet[/]
    """
    infos = []
    for path in traces:
        trace = open_trace(path)
        trace.validate()
        meta = asdict(trace.meta)
        infos.append({"trace": str(path), "rows": trace.num_rows, "row_groups": trace.num_row_groups,
                      "has_logits": trace.has_logits, "has_lookahead": trace.has_lookahead,
                      "file_bytes": path.stat().st_size, **meta})
    if json_out:
        render.print_json({"traces": infos})
        return
    for info in infos:
        rows = [(k, v) for k, v in info.items() if k not in ("trace", "extra", "moe_layer_ids")]
        bpe = info["bytes_per_expert"]
        rows.append(("expert size", ", ".join(render.human_bytes(b) for b in sorted(set(bpe)))))
        render.key_values(info["trace"], rows)
