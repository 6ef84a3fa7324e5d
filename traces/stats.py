"""Trace statistics with polars: what shapes a cache's hit rate before any simulation.

- popularity: each layer's share of expert choices, its skew (share of the top quarter of experts,
  Gini coefficient) and its entropy (normalised: 1 = uniform routing, 0 = one expert only);
- reuse distance: tokens between two choices of the same expert at the same layer of a request;
- temporal locality: how often an expert chosen at token t is chosen again at t+1 (same layer),
  beside what independent draws with the same popularity would give;
- cross-layer co-activation: for adjacent layers l, l+1, how well the best successor of each
  expert at l predicts a choice at l+1 (top-1 conditional probability), beside independence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from traces.reader import Trace

REUSE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class LayerStats:
    layer: int
    choices: int
    top_quarter_share: float
    gini: float
    entropy: float
    repeat_rate: float
    repeat_rate_independent: float
    next_layer_top1: float | None
    next_layer_top1_independent: float | None


@dataclass
class TraceStats:
    trace: str
    rows: int
    requests: int
    prefill_rows: int
    decode_rows: int
    num_layers: int
    num_experts: int
    top_k: int
    top_quarter_share: float
    gini: float
    entropy: float
    repeat_rate: float
    repeat_rate_independent: float
    next_layer_top1: float
    next_layer_top1_independent: float
    reuse_distance: dict[str, float]
    layers: list[LayerStats]

    def to_dict(self) -> dict:
        return asdict(self)


def _choices(trace: Trace) -> pl.LazyFrame:
    """One row per (request, token, layer, expert) choice."""
    return (
        trace.lazy()
        .select("request", "token", "layer", "experts")
        .explode("experts")
        .rename({"experts": "expert"})
        .with_columns(pl.col("layer").cast(pl.Int32), pl.col("expert").cast(pl.Int32))
    )


def _gini(shares: np.ndarray) -> float:
    s = np.sort(shares)
    n = len(s)
    if n == 0 or s.sum() == 0:
        return 0.0
    cum = np.cumsum(s)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def _popularity(counts: pl.DataFrame, num_layers: int, num_experts: int) -> np.ndarray:
    matrix = np.zeros((num_layers, num_experts))
    matrix[counts["layer"].to_numpy(), counts["expert"].to_numpy()] = counts["n"].to_numpy()
    return matrix


def compute_stats(trace: Trace) -> TraceStats:
    """Statistics of a trace; its rows are validated first (polars reads them without the reader's checks)."""
    trace.validate()
    meta = trace.meta
    L, E, K = meta.num_layers, meta.num_experts, meta.top_k
    choices = _choices(trace).collect()
    counts = choices.group_by("layer", "expert").agg(pl.len().alias("n"))
    pop = _popularity(counts, L, E)  # (L, E) choice counts
    totals = pop.sum(axis=1)
    shares = pop / np.maximum(totals[:, None], 1)
    quarter = max(1, E // 4)
    top_quarter = np.sort(shares, axis=1)[:, -quarter:].sum(axis=1)
    ginis = np.array([_gini(row) for row in shares])
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(shares > 0, shares * np.log(shares), 0.0), axis=1) / np.log(E)

    # temporal locality: same (request, layer, expert) at token t and t + 1
    keyed = choices.select("request", "token", "layer", "expert")
    nxt = keyed.with_columns((pl.col("token") - 1).alias("token"))
    repeats = keyed.join(nxt, on=["request", "token", "layer", "expert"], how="semi")
    pairs = keyed.join(
        keyed.select("request", "layer", (pl.col("token") - 1).alias("token")).unique(),
        on=["request", "token", "layer"], how="semi",
    )
    rep = _per_layer(repeats, L) / np.maximum(_per_layer(pairs, L), 1)
    # with independent draws, P(e at t+1) = K * share_e (for small shares)
    rep_ind = (shares * np.minimum(1.0, K * shares)).sum(axis=1)

    # cross-layer: co-activation counts of (e at l, e' at l+1) for the same token
    succ = keyed.with_columns((pl.col("layer") - 1).alias("layer")).rename({"expert": "next_expert"})
    co = keyed.join(succ, on=["request", "token", "layer"]).group_by("layer", "expert", "next_expert").agg(
        pl.len().alias("n")
    )
    top1, top1_ind = _cross_layer(co, pop, shares, L, E, K)

    reuse = _reuse_distance(keyed)
    phase = trace.lazy().group_by("phase").agg(pl.len()).collect()
    phase_rows = dict(zip(phase["phase"].to_list(), phase["len"].to_list()))
    weights = np.maximum(totals, 1)
    layers = [
        LayerStats(l, int(totals[l]), float(top_quarter[l]), float(ginis[l]), float(ent[l]), float(rep[l]),
                   float(rep_ind[l]), _opt(top1[l]) if l < L - 1 else None,
                   _opt(top1_ind[l]) if l < L - 1 else None)
        for l in range(L)
    ]
    inner = weights[:-1] if L > 1 else weights
    return TraceStats(
        trace=str(trace.path), rows=trace.num_rows,
        requests=int(choices["request"].n_unique()) if len(choices) else 0,
        prefill_rows=int(phase_rows.get("prefill", 0)), decode_rows=int(phase_rows.get("decode", 0)),
        num_layers=L, num_experts=E, top_k=K,
        top_quarter_share=_avg(top_quarter, weights), gini=_avg(ginis, weights), entropy=_avg(ent, weights),
        repeat_rate=_avg(rep, weights), repeat_rate_independent=_avg(rep_ind, weights),
        next_layer_top1=_avg(np.nan_to_num(top1[:-1]), inner) if L > 1 else float("nan"),
        next_layer_top1_independent=_avg(np.nan_to_num(top1_ind[:-1]), inner) if L > 1 else float("nan"),
        reuse_distance=reuse, layers=layers,
    )


def _opt(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _avg(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.average(values, weights=weights)) if weights.sum() else float("nan")


def _per_layer(frame: pl.DataFrame, L: int) -> np.ndarray:
    counts = frame.group_by("layer").agg(pl.len().alias("n"))
    out = np.zeros(L)
    out[counts["layer"].to_numpy()] = counts["n"].to_numpy()
    return out


def _cross_layer(co: pl.DataFrame, pop: np.ndarray, shares: np.ndarray, L: int, E: int, K: int):
    """Mean over an expert's occurrences at l of max_e' P(e' at l+1 | e at l), and its independent value."""
    top1 = np.full(L, np.nan)
    top1_ind = np.full(L, np.nan)
    if L < 2 or co.is_empty():
        return top1, top1_ind
    matrix = np.zeros((L, E, E))
    matrix[co["layer"].to_numpy(), co["expert"].to_numpy(), co["next_expert"].to_numpy()] = co["n"].to_numpy()
    for l in range(L - 1):
        occurrences = pop[l]
        if occurrences.sum() == 0:
            continue
        best = matrix[l].max(axis=1) / np.maximum(occurrences, 1)
        top1[l] = float((best * occurrences).sum() / occurrences.sum())
        top1_ind[l] = float(min(1.0, K * shares[l + 1].max()))
    return top1, top1_ind


def _reuse_distance(keyed: pl.DataFrame) -> dict[str, float]:
    """Share of re-choices by distance in tokens (same request, layer and expert), plus cold share."""
    gaps = (
        keyed.sort("request", "layer", "expert", "token")
        .with_columns(pl.col("token").diff().over("request", "layer", "expert").alias("gap"))
        ["gap"].to_numpy()
    )
    total = len(gaps)
    if total == 0:
        return {}
    valid = gaps[~np.isnan(gaps)] if gaps.dtype.kind == "f" else gaps
    out: dict[str, float] = {"first_use": float((total - len(valid)) / total)}
    lower = 1
    for upper in REUSE_BUCKETS:
        label = f"{lower}" if lower == upper else f"{lower}-{upper}"
        out[label] = float(((valid >= lower) & (valid <= upper)).sum() / total)
        lower = upper + 1
    out[f">{REUSE_BUCKETS[-1]}"] = float((valid > REUSE_BUCKETS[-1]).sum() / total)
    return out
