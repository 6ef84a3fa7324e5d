"""The `--device` choice of `record`, `run` and `calibrate`, resolved once, with one clear line when it cannot be."""

from __future__ import annotations

import re

from traces.errors import MoecacheError


def resolve_device(choice: str) -> str:
    """auto (CUDA if present, else the CPU), cpu, cuda or cuda:N, checked against what this machine has."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", choice):
        raise MoecacheError(f"--device {choice}: choose auto, cuda or cpu (cuda:N for one of several GPUs)")
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise MoecacheError(f"--device {choice}: no CUDA device is available (use --device cpu or auto)")
    return choice
