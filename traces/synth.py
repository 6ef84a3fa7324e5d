"""Synthetic traces shaped like a named model, with three knobs that real routing exhibits.

Each choice (token t, layer l, slot j) is drawn in this order:
- with probability `locality`, the expert the previous token chose at this layer and slot
  (temporal locality);
- else, with probability `cross_layer`, the fixed successor of the expert this token chose at
  layer l - 1 in slot j (cross-layer correlation: each layer has a random successor map);
- else, a draw from layer l's popularity, a Zipf law with exponent `skew` over a random ranking.
A repeated expert within one token moves to the next expert in popularity order. Weights are
sorted normalised exponential draws; optional logits put the chosen experts on top in weight
order; optional lookahead names the next layer's true choice with probability
`lookahead_accuracy`. Defaults are fitted to the real Mixtral-8x7B logs (see bench/fit_synth.py
and the README). Everything follows from the seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces.errors import MoecacheError
from traces.model_specs import ModelSpec
from traces.schema import DECODE, PREFILL
from traces.version import VERSION
from traces.writer import TraceWriter

CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class SynthParams:
    requests: int = 8
    prompt_tokens: int = 64
    decode_tokens: int = 192
    skew: float = 0.55
    locality: float = 0.12
    cross_layer: float = 0.35
    lookahead_accuracy: float | None = None
    logits: bool = False
    seed: int = 0

    def validate(self) -> SynthParams:
        if self.requests < 1 or self.prompt_tokens < 0 or self.decode_tokens < 0:
            raise MoecacheError("--requests must be at least 1, token counts 0 or more")
        if self.prompt_tokens + self.decode_tokens < 1:
            raise MoecacheError("a request needs at least one prompt or decode token")
        for name in ("locality", "cross_layer"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MoecacheError(f"--{name.replace('_', '-')} must be within 0..1")
        if self.locality + self.cross_layer > 1.0:
            raise MoecacheError("--locality plus --cross-layer must not exceed 1")
        if self.skew < 0:
            raise MoecacheError("--skew must be 0 (uniform) or more")
        if self.lookahead_accuracy is not None and not 0.0 <= self.lookahead_accuracy < 1.0 + 1e-12:
            raise MoecacheError("--lookahead-accuracy must be within 0..1")
        return self


@dataclass
class SynthResult:
    path: Path
    rows: int
    seconds: float


def _layer_tables(spec: ModelSpec, skew: float, rng: np.random.Generator):
    L, E = spec.num_layers, spec.num_experts
    zipf = 1.0 / np.arange(1, E + 1) ** skew
    zipf /= zipf.sum()
    order = np.stack([rng.permutation(E) for _ in range(L)]).astype(np.int64)  # experts by rank
    rank = np.argsort(order, axis=1).astype(np.int64)
    popularity = zipf[rank]  # (L, E) share of each expert id
    cdf = np.cumsum(popularity, axis=1)
    cdf[:, -1] = 1.0
    successor = np.stack([rng.permutation(E) for _ in range(L)]).astype(np.int64)
    return cdf, rank, order, successor


def _row_layout(spec: ModelSpec, P: int, D: int):
    """Per request: the (token, layer, phase) of each row in execution order, and where it comes
    from in a (tokens, layers) grid: prefill layer by layer, then decode token by token."""
    L = spec.num_layers
    pre_t, pre_l = np.meshgrid(np.arange(P), np.arange(L))  # (L, P): layer-major
    dec_l, dec_t = np.meshgrid(np.arange(L), np.arange(P, P + D))  # (D, L): token-major
    tokens = np.concatenate([pre_t.ravel(), dec_t.ravel()]).astype(np.int32)
    layers = np.concatenate([pre_l.ravel(), dec_l.ravel()]).astype(np.int16)
    phase = np.concatenate([np.full(P * L, PREFILL), np.full(D * L, DECODE)]).astype(np.int8)
    return tokens, layers, phase, tokens.astype(np.int64) * L + layers


def _logits(experts: np.ndarray, weights: np.ndarray, E: int, rng: np.random.Generator) -> np.ndarray:
    """Logits whose top-k are `experts` in order and whose softmax over them gives `weights`."""
    n, K = experts.shape
    logits = rng.standard_normal((n, E)).astype(np.float32)
    chosen = np.log(weights)
    floor = logits.max(axis=1, keepdims=True) - chosen[:, -1:] + 0.5
    np.put_along_axis(logits, experts.astype(np.int64), chosen + floor, axis=1)
    return logits.astype(np.float16)


def synthesize(spec: ModelSpec, out: Path, params: SynthParams,
               progress: Callable[[int, int], None] | None = None, command: str = "") -> SynthResult:
    """Write a synthetic trace shaped like `spec` to `out`."""
    from traces.synth_kernel import generate_choices  # numba: loaded only when a trace is made

    params.validate()
    started = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    L, E, K = spec.num_layers, spec.num_experts, spec.top_k
    P, D = params.prompt_tokens, params.decode_tokens
    cdf, rank, order, successor = _layer_tables(spec, params.skew, rng)
    tokens, layers, phase, grid_index = _row_layout(spec, P, D)
    rows_per_request = len(tokens)
    per_chunk = max(1, CHUNK_ROWS // rows_per_request)
    prev = np.zeros((L, K), dtype=np.int16)
    first = np.zeros(P + D, dtype=np.bool_)
    first[0] = True
    lookahead = params.lookahead_accuracy is not None
    meta = spec.trace_meta(tool_version=VERSION, command=command,
                           source=f"synth:skew={params.skew},locality={params.locality},"
                                  f"cross_layer={params.cross_layer},seed={params.seed}")
    total = params.requests * rows_per_request
    with TraceWriter(out, meta, logits=params.logits, lookahead=lookahead) as writer:
        for start in range(0, params.requests, per_chunk):
            R = min(per_chunk, params.requests - start)
            u = rng.random((R * (P + D), L, K, 3), dtype=np.float32)
            grid, ahead = generate_choices(np.tile(first, R), cdf, rank, order, successor, params.locality,
                                           params.cross_layer, params.lookahead_accuracy or 0.0, u, prev)
            draws = -np.sort(-rng.exponential(size=grid.shape).astype(np.float32), axis=-1)
            draws /= draws.sum(axis=-1, keepdims=True)
            # (R, tokens * layers, K) grids -> rows in execution order
            pick = lambda a: a.reshape(R, (P + D) * L, K)[:, grid_index].reshape(-1, K)  # noqa: E731
            block = {
                "request": np.repeat(np.arange(start, start + R, dtype=np.int32), rows_per_request),
                "token": np.tile(tokens, R),
                "phase": np.tile(phase, R),
                "layer": np.tile(layers, R),
                "experts": pick(grid),
                "weights": pick(draws),
            }
            if params.logits:
                block["logits"] = _logits(block["experts"], block["weights"], E, rng)
            if lookahead:
                block["lookahead"] = pick(ahead)
            writer.append_columns(block)
            if progress:
                progress(min(total, (start + R) * rows_per_request), total)
    return SynthResult(out, writer.rows_written, time.perf_counter() - started)
