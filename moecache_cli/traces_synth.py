"""`moecache traces synth`: synthetic traces shaped like a named model."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json, LikeSpec, Out, Quiet, Seed, command_line
from traces.errors import MoecacheError
from traces.model_specs import load_spec
from traces.synth import SynthParams, synthesize

DEFAULTS = SynthParams()


def command(
    out: Out,
    like: LikeSpec = "mixtral-8x7b",
    layers: Annotated[int | None, typer.Option(help="MoE layers (default: the model's); fewer layers make a trace "
                                                    "that matches a `checkpoint tiny --like` of that many.")] = None,
    requests: Annotated[int, typer.Option(help="Number of requests (prompts).")] = DEFAULTS.requests,
    prompt_tokens: Annotated[int, typer.Option(help="Prefill tokens per request.")] = DEFAULTS.prompt_tokens,
    decode_tokens: Annotated[int, typer.Option(help="Decode tokens per request.")] = DEFAULTS.decode_tokens,
    skew: Annotated[float, typer.Option(help="Zipf exponent of each layer's expert popularity (0 = uniform).")]
    = DEFAULTS.skew,
    locality: Annotated[float, typer.Option(help="Probability a choice repeats the previous token's.")]
    = DEFAULTS.locality,
    cross_layer: Annotated[float, typer.Option(help="Probability a choice follows the previous layer's "
                                                    "expert through a fixed successor map.")] = DEFAULTS.cross_layer,
    lookahead_accuracy: Annotated[float | None, typer.Option(help="Write a lookahead column that names the next "
                                                                  "layer's true choice with this probability.")]
    = None,
    logits: Annotated[bool, typer.Option("--logits", help="Write router logits consistent with the choices.")]
    = False,
    seed: Seed = DEFAULTS.seed,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Write a synthetic trace shaped like a model spec; defaults are fitted to real Mixtral logs.

    Example: [bold]moecache traces synth --like qwen3-30b-a3b --requests 800 -o qwen3.parquet[/]
    """
    spec = load_spec(like)
    if layers is not None:
        if layers < 1:
            raise MoecacheError(f"--layers {layers} must be at least 1")
        spec = dataclasses.replace(spec, num_layers=layers)
    params = SynthParams(requests=requests, prompt_tokens=prompt_tokens, decode_tokens=decode_tokens, skew=skew,
                         locality=locality, cross_layer=cross_layer, lookahead_accuracy=lookahead_accuracy,
                         logits=logits, seed=seed)
    with render.progress_bar("synthesising", "rows", enabled=not (quiet or json_out)) as update:
        result = synthesize(spec, out, params, progress=update, command=command_line())
    summary = {"trace": str(result.path), "model": spec.name, "rows": result.rows,
               "seconds": round(result.seconds, 3), "rows_per_s": round(result.rows / max(result.seconds, 1e-9))}
    if json_out:
        render.print_json(summary)
    else:
        render.key_values("synthesised", list(summary.items()))
