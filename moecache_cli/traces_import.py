"""`moecache traces import`: foreign routing logs to trace v1."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json, ModelSpecName, Out, command_line
from traces.importers import import_vllm_jsonl
from traces.model_specs import load_spec


def command(
    log: Annotated[Path, typer.Argument(help="vLLM-style routing log (.jsonl).", show_default=False)],
    out: Out,
    model: ModelSpecName = "mixtral-8x7b",
    json_out: Json = False,
) -> None:
    """Convert a vLLM-style JSON Lines routing log into a moecache trace.

    Example: [bold]moecache traces import ../shared/traces/mixtral-8x7b-gsm8k.jsonl -m mixtral-8x7b -o gsm8k.parquet[/]

    Irregularities (prefill logged at position 0, duplicate rows, missing tokens) are resolved by
    the documented rule in traces/importers.py and counted in the summary.
    """
    summary = import_vllm_jsonl(log, load_spec(model), out, command=command_line())
    if json_out:
        render.print_json({"trace": str(out), **asdict(summary)})
        return
    fields = asdict(summary)
    per_request = fields.pop("per_request")
    render.key_values(f"imported {log.name} -> {out}", list(fields.items()))
    render.grid("per request", list(per_request[0]), [list(r.values()) for r in per_request])
