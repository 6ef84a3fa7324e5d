"""`moecache traces import`: foreign routing logs to trace v1."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json, ModelSpecName, Out, command_line
from traces.errors import MoecacheError
from traces.importers import CANONICAL, FORMATS, import_log
from traces.model_specs import load_spec


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value.strip():
            raise MoecacheError(f"--map {pair!r}: expected FIELD=NAME, e.g. --map experts=topk_ids")
        mapping[key.strip()] = value.strip()
    return mapping


def command(
    log: Annotated[Path, typer.Argument(help="Routing log: JSON Lines, or .npy/.npz routed-expert arrays.",
                                        show_default=False)],
    out: Out,
    model: ModelSpecName = "mixtral-8x7b",
    fmt: Annotated[str, typer.Option("--format", help=f"auto, or one of {', '.join(FORMATS)}.")] = "auto",
    map_: Annotated[list[str], typer.Option("--map", help=f"FIELD=NAME (repeatable): the log's name for one of "
                                                          f"{', '.join(CANONICAL)}; request may list several "
                                                          "names, comma-separated.")] = [],  # noqa: B006
    prompt_tokens: Annotated[int, typer.Option(help="routed-experts arrays: each request's first N tokens are "
                                                    "its prompt (prefill).")] = 0,
    json_out: Json = False,
) -> None:
    """Convert a foreign routing log into a moecache trace.

    Examples:
      [bold]moecache traces import ../shared/traces/mixtral-8x7b-gsm8k.jsonl -m mixtral-8x7b -o gsm8k.parquet[/]
      [bold]moecache traces import routes.jsonl -m olmoe-1b-7b -o routes.parquet[/]  (meta line + batched route rows)
      [bold]moecache traces import routed_experts.npz -m qwen3-30b-a3b --prompt-tokens 128 -o qwen3.parquet[/]
      [bold]moecache traces import mine.jsonl -m mixtral-8x7b --map experts=ids --map weights=probs
      --map position=pos --map request=seq -o mine.parquet[/]

    The format is recognised from the file (--format auto). Irregularities (prefill logged at position 0,
    duplicate rows, missing tokens, batched calls) are resolved by the documented rules in traces/importers.py,
    traces/import_batched.py and traces/import_arrays.py, and counted in the summary.
    """
    summary = asdict(import_log(log, load_spec(model), out, fmt, _mapping(map_), prompt_tokens, command_line()))
    if json_out:
        render.print_json({"trace": str(out), **summary})
        return
    per_request = summary.pop("per_request", None)
    render.key_values(f"imported {log.name} -> {out}", list(summary.items()))
    if per_request:
        render.grid("per request", list(per_request[0]), [list(r.values()) for r in per_request])
