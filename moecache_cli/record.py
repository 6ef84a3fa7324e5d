"""`moecache record`: routing traces from a real MoE checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Json, Out, Quiet, Seed, command_line
from traces.errors import MoecacheError


def command(
    checkpoint: Annotated[Path, typer.Argument(help="Local Hugging Face checkpoint folder (config.json, "
                                                    "*.safetensors, tokenizer).", show_default=False)],
    out: Out,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Prompt file: one per line, or .jsonl with a \"prompt\" "
                                                      "field per line.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate (and record) per prompt.")] = 32,
    logits: Annotated[bool, typer.Option("--logits", help="Also store full router logits (needed for "
                                                          "memory-aware re-routing).")] = False,
    lookahead: Annotated[bool, typer.Option("--lookahead", help="Also store the next layer's gate applied "
                                                                "to this layer's input.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (the checkpoint's), float32, bfloat16 or float16.")] = "auto",
    temperature: Annotated[float, typer.Option(help="0 = greedy; above 0 samples with --seed.")] = 0.0,
    seed: Seed = 0,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos", help="Generate max-new-tokens even past "
                                                                  "end-of-sequence.")] = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Run a MoE checkpoint over prompts and write every token's routing at every MoE layer.

    Example: [bold]moecache record ./Mixtral-8x7B -p "Explain caches" --max-new-tokens 64 --lookahead -o run.parquet[/]

    Ctrl-C stops cleanly: the trace keeps everything recorded so far and is marked incomplete.
    """
    from engine.device import resolve_device
    from traces.recording import RecordOptions, read_prompts
    from traces.recording import record as record_trace

    texts = list(prompt or [])
    if prompts is not None:
        texts += read_prompts(prompts)
    if not texts:
        raise MoecacheError("no prompt given; use --prompt TEXT or --prompts FILE")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise MoecacheError(f"--dtype {dtype}: use auto, float32, bfloat16 or float16")
    options = RecordOptions(max_new_tokens=max_new_tokens, logits=logits, lookahead=lookahead,
                            device=resolve_device(device), dtype=dtype, temperature=temperature, seed=seed,
                            stop_at_eos=not ignore_eos, command=command_line())
    with render.progress_bar("recording", "tokens", enabled=not (quiet or json_out)) as update:
        result = record_trace(checkpoint, texts, out, options, progress=update)
    summary = {
        "trace": str(result.path), "rows": result.rows, "prompts": len(result.sequences),
        "prompt_tokens": result.prompt_tokens, "decode_tokens": result.decode_tokens,
        "seconds": round(result.seconds, 3),
        "tokens_per_s": round((result.prompt_tokens + result.decode_tokens) / max(result.seconds, 1e-9), 2),
        "complete": not result.interrupted,
    }
    if json_out:
        render.print_json(summary)
    else:
        render.key_values("recorded", list(summary.items()))
    if result.interrupted:
        render.err_console.print(f"moecache: interrupted: {result.path} holds the {result.rows:,} rows recorded "
                                 "so far and is marked incomplete")
        raise typer.Exit(2)
