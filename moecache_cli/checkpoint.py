"""`moecache checkpoint tiny`: a random-weight checkpoint to try `record` without a download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import Seed
from engine.tiny_checkpoint import ARCHITECTURES, write_tiny_checkpoint
from traces.errors import MoecacheError


def tiny(
    out: Annotated[Path, typer.Argument(help="New folder for the checkpoint.", show_default=False)],
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(ARCHITECTURES)}.")] = "mixtral",
    layers: Annotated[int, typer.Option(help="Decoder layers.")] = 4,
    experts: Annotated[int, typer.Option(help="Routed experts per MoE layer.")] = 8,
    top_k: Annotated[int, typer.Option(help="Experts chosen per token.")] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden size.")] = 64,
    seed: Seed = 0,
) -> None:
    """Write a small random-weight Hugging Face checkpoint (real model class, safetensors, tokenizer).

    Example: [bold]moecache checkpoint tiny ./tiny-mixtral --arch mixtral[/]
    """
    if arch not in ARCHITECTURES:
        raise MoecacheError(f"--arch {arch}: choose one of {', '.join(ARCHITECTURES)}")
    if not 1 <= top_k <= experts:
        raise MoecacheError(f"--top-k {top_k} must be within 1..--experts ({experts})")
    path = write_tiny_checkpoint(out, arch, seed=seed, layers=layers, experts=experts, top_k=top_k, hidden=hidden)
    render.key_values("checkpoint written", [("folder", path), ("architecture", arch), ("layers", layers),
                                             ("experts", experts), ("top_k", top_k)])
