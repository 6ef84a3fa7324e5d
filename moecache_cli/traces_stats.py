"""`moecache traces stats`: popularity, skew, reuse, locality and cross-layer co-activation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json
from traces.reader import open_trace

SUMMARY = ("rows", "requests", "prefill_rows", "decode_rows", "top_quarter_share", "gini", "entropy",
           "repeat_rate", "repeat_rate_independent", "next_layer_top1", "next_layer_top1_independent")


def command(
    traces: Annotated[list[Path], typer.Argument(help="One or more traces (.parquet).", show_default=False)],
    layers: Annotated[bool, typer.Option("--layers", help="Also print the per-layer table.")] = False,
    json_out: Json = False,
) -> None:
    """Routing statistics that decide how well experts cache; several traces print side by side.

    Example: [bold]moecache traces stats gsm8k.parquet synth.parquet[/]

    repeat_rate: share of (token, layer) choices chosen again by the next token; next_layer_top1:
    how often the best successor of an expert at layer l is chosen at l+1. Each is shown beside
    the value independent routing with the same popularity would give.
    """
    from traces.stats import compute_stats

    stats = [compute_stats(open_trace(path)) for path in traces]
    if json_out:
        render.print_json({"stats": [s.to_dict() for s in stats]})
        return
    names = [Path(s.trace).name for s in stats]
    render.grid("routing statistics", ["metric", *names],
                [[key, *[getattr(s, key) for s in stats]] for key in SUMMARY])
    buckets = list(stats[0].reuse_distance)
    render.grid("reuse distance (tokens between choices of an expert at a layer), share of choices",
                ["distance", *names], [[b, *[s.reuse_distance.get(b) for s in stats]] for b in buckets])
    if layers:
        for s in stats:
            columns = ["layer", "choices", "top_quarter_share", "gini", "entropy", "repeat_rate",
                       "next_layer_top1"]
            render.grid(f"per layer: {Path(s.trace).name}", columns,
                        [[getattr(row, c) for c in columns] for row in s.layers])
