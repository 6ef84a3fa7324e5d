"""Per-request arrays of routed experts, as vLLM's `routed_experts` output saves them with numpy.

A `.npy` file holds one request's array of expert ids, shaped (tokens, layers, top_k); a `.npz`
file holds one such array per request, taken in the natural order of their names (`r2` before
`r10`). The arrays carry no routing weights: each choice gets 1 / top_k. They do not say where the
prompt ends either: with `prompt_tokens` P, each request's first P tokens are its prefill (written
layer by layer), the rest decode tokens; by default every token is a decode token. Files are loaded
with `allow_pickle=False`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces.errors import MoecacheError
from traces.model_specs import ModelSpec
from traces.schema import DECODE
from traces.version import VERSION
from traces.writer import TraceWriter


@dataclass
class ArraysSummary:
    source: str
    format: str = "routed-experts-npy"
    requests: int = 0
    rows_written: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_requests(source: Path) -> list[tuple[str, np.ndarray]]:
    try:
        loaded = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MoecacheError(f"{source}: not a numpy .npy/.npz file without pickles ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return [(source.stem, loaded)]
    with loaded:
        return [(name, loaded[name]) for name in sorted(loaded.files, key=_natural)]


def import_routed_experts(source: Path, spec: ModelSpec, out: Path, prompt_tokens: int = 0,
                          command: str = "") -> ArraysSummary:
    """Convert routed-expert arrays to a trace by the rules above."""
    if prompt_tokens < 0:
        raise MoecacheError("--prompt-tokens must be 0 or more")
    requests = load_requests(source)
    if not requests:
        raise MoecacheError(f"{source}: no arrays")
    summary = ArraysSummary(source=str(source), requests=len(requests))
    L, K = spec.num_layers, spec.top_k
    meta = spec.trace_meta(tool_version=VERSION, command=command, source=f"routed-experts:{source.name}")
    with TraceWriter(out, meta) as writer:
        for request, (name, array) in enumerate(requests):
            where = f"{source} ({name})"
            if array.ndim != 3 or array.shape[1:] != (L, K) or not np.issubdtype(array.dtype, np.integer):
                raise MoecacheError(f"{where}: expected integer expert ids shaped (tokens, {L}, {K}) for model spec "
                                    f"{spec.name}, got {array.dtype} {array.shape}")
            if array.size and (array.min() < 0 or array.max() >= spec.num_experts):
                raise MoecacheError(f"{where}: expert ids outside 0..{spec.num_experts - 1}")
            tokens = array.shape[0]
            prefill = min(prompt_tokens, tokens)
            weights = np.full((1, K), 1.0 / K, np.float32)
            for layer in range(L):  # the prompt, layer by layer (one step per layer)
                if prefill:
                    writer.append(request, np.arange(prefill), "prefill", layer, array[:prefill, layer],
                                  np.repeat(weights, prefill, axis=0))
            for token in range(prefill, tokens):
                block = {"request": np.full(L, request, np.int32), "token": np.full(L, token, np.int32),
                         "phase": np.full(L, DECODE, np.int8), "layer": np.arange(L, dtype=np.int16),
                         "experts": array[token].astype(np.int16), "weights": np.repeat(weights, L, axis=0)}
                writer.append_columns(block)
            summary.prefill_tokens += prefill
            summary.decode_tokens += tokens - prefill
    summary.rows_written = writer.rows_written
    return summary
