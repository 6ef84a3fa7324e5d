"""`moecache checkpoint tiny`: a random-weight checkpoint to try `record` and `run` without a download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Quiet, Seed
from traces.errors import MoecacheError
from traces.model_specs import ARCHITECTURES


def tiny(
    out: Annotated[Path, typer.Argument(help="New folder for the checkpoint.", show_default=False)],
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(ARCHITECTURES)}.")] = "mixtral",
    layers: Annotated[int, typer.Option(help="Decoder layers.")] = 4,
    experts: Annotated[int, typer.Option(help="Routed experts per MoE layer.")] = 8,
    top_k: Annotated[int, typer.Option(help="Experts chosen per token.")] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden size.")] = 64,
    like: Annotated[str | None, typer.Option("--like", help="Take architecture, hidden and expert sizes, experts, "
                                                            "top-k and dtype from this model spec (e.g. olmoe-1b-7b); "
                                                            "--layers still applies.")] = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Write a random-weight Hugging Face checkpoint (real model class, safetensors, tokenizer).

    Examples:
      [bold]moecache checkpoint tiny ./tiny-mixtral --arch mixtral[/]
      [bold]moecache checkpoint tiny ./olmoe-like --like olmoe-1b-7b --layers 4[/]  (experts of the real size)
    """
    if layers < 1:
        raise MoecacheError(f"--layers {layers} must be at least 1")
    if like is not None:
        _like(out, like, layers, seed, quiet)
        return
    if arch not in ARCHITECTURES:
        raise MoecacheError(f"--arch {arch}: choose one of {', '.join(ARCHITECTURES)}")
    if not 1 <= top_k <= experts:
        raise MoecacheError(f"--top-k {top_k} must be within 1..--experts ({experts})")
    from engine.tiny_checkpoint import write_tiny_checkpoint

    path = write_tiny_checkpoint(out, arch, seed=seed, layers=layers, experts=experts, top_k=top_k, hidden=hidden)
    render.key_values("checkpoint written", [("folder", path), ("architecture", arch), ("layers", layers),
                                             ("experts", experts), ("top_k", top_k)])


def _like(out: Path, like: str, layers: int, seed: int, quiet: bool) -> None:
    from engine.like_checkpoint import write_like_checkpoint
    from traces.model_specs import load_spec

    spec = load_spec(like)
    with render.progress_bar("writing", "bytes", enabled=not quiet) as update:
        path, total = write_like_checkpoint(out, spec, layers, seed=seed, progress=update)
    render.key_values("checkpoint written", [("folder", path), ("like", spec.name),
                                             ("architecture", spec.architecture), ("layers", layers),
                                             ("experts", spec.num_experts), ("top_k", spec.top_k),
                                             ("expert bytes", f"{spec.bytes_per_expert:,}" if spec.dtype != "mxfp4"
                                              else "bfloat16 (the spec's MXFP4 is not written)"),
                                             ("size", render.human_bytes(total))])
