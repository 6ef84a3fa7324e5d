"""One run, one flat record with the stable names of DESIGN.md section 7 (shared with `run` and
`compare`), plus the extras that explain them; written as JSON or Parquet next to the human view."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator import accounting as ac
from simulator import events as ev
from traces.atomic import discard, publish, temporary_sibling


@dataclass
class RunResult:
    trace: str
    policy: str
    prefetch: str
    vram_bytes: int
    ram_bytes: int
    accesses: int
    vram_hits: int
    vram_misses: int
    vram_hit_rate: float
    ram_hits: int
    ram_misses: int
    ram_hit_rate: float
    hit_rate: float
    misses: int
    bytes_nvme_to_ram: int
    bytes_ram_to_vram: int
    evictions: int
    prefetch_issued: int
    prefetch_used: int
    prefetch_accuracy: float
    prefetch_coverage: float
    stall_p50_ms: float
    stall_p99_ms: float
    time_per_token_s: float
    tokens_per_s: float
    routing_changed_steps: int
    routing_weight_lost: float
    # extras
    model: str = ""
    preset: str = ""
    policy_params: str = ""
    mode: str = ""
    routing_bonus: float = 0.0  # memory-aware routing's bonus; 0: the recorded routing
    compulsory_misses: int = 0
    capacity_misses: int = 0
    staged: int = 0
    cpu_computed: int = 0
    evictions_ram: int = 0
    bytes_vram_to_ram: int = 0
    prefetch_wasted: int = 0
    stall_p90_ms: float = 0.0
    stall_max_ms: float = 0.0
    stalled_steps: int = 0
    steps: int = 0
    decode_tokens: int = 0
    prefill_tokens: int = 0
    compute_s: float = 0.0
    transfer_s: float = 0.0
    stall_s: float = 0.0
    total_time_s: float = 0.0
    prefill_time_s: float = 0.0
    decode_time_s: float = 0.0
    routing_changed_fraction: float = 0.0
    layer_hit_rates: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def summarize(tally: ac.Tally, routing: np.ndarray, **labels: object) -> RunResult:
    """The run's record from its tally; `labels` fill trace, policy, prefetch, sizes and extras."""
    k, c, t = tally.kinds, tally.counters, tally.times
    hits = int(k[ev.HIT])
    accesses = int(c[ac.C_ACCESSES])
    misses = accesses - hits
    ram_hits = int(sum(k[i] for i in ev.FROM_RAM))
    ram_misses = int(sum(k[i] for i in ev.FROM_NVME))
    used = int(c[ac.C_PF_USED])
    stalls = np.concatenate(tally.stalls) if tally.stalls else np.zeros(0, np.float32)
    quantile = (lambda q: float(np.quantile(stalls, q)) * 1e3) if len(stalls) else (lambda q: 0.0)
    decode_tokens, prefill_tokens = int(c[ac.C_DECODE_TOKENS]), int(c[ac.C_PREFILL_TOKENS])
    if decode_tokens:
        per_token = float(t[ac.T_DECODE]) / decode_tokens
    else:
        per_token = _ratio(t[ac.T_PREFILL], prefill_tokens)
    steps = int(c[ac.C_STEPS])
    return RunResult(
        accesses=accesses, vram_hits=hits, vram_misses=misses, vram_hit_rate=_ratio(hits, accesses),
        ram_hits=ram_hits, ram_misses=ram_misses, ram_hit_rate=_ratio(ram_hits, misses),
        hit_rate=_ratio(hits, accesses), misses=misses,
        bytes_nvme_to_ram=int(c[ac.C_NVME_BYTES]), bytes_ram_to_vram=int(c[ac.C_PCIE_BYTES]),
        evictions=int(k[ev.EVICT_VRAM]), prefetch_issued=int(c[ac.C_PF_ISSUED]), prefetch_used=used,
        prefetch_accuracy=_ratio(used, c[ac.C_PF_ISSUED]), prefetch_coverage=_ratio(used, misses + used),
        stall_p50_ms=quantile(0.5), stall_p99_ms=quantile(0.99), time_per_token_s=per_token,
        tokens_per_s=_ratio(1.0, per_token),
        routing_changed_steps=int(routing[0]), routing_weight_lost=_ratio(routing[2], routing[1]),
        compulsory_misses=int(c[ac.C_COMPULSORY]), capacity_misses=misses - int(c[ac.C_COMPULSORY]),
        staged=int(k[ev.STAGE_RAM] + k[ev.STAGE_NVME]), cpu_computed=int(k[ev.CPU_RAM] + k[ev.CPU_NVME]),
        evictions_ram=int(k[ev.EVICT_RAM]), bytes_vram_to_ram=int(c[ac.C_DOWN_BYTES]),
        prefetch_wasted=int(c[ac.C_PF_WASTED]), stall_p90_ms=quantile(0.9), stall_max_ms=quantile(1.0),
        stalled_steps=int(c[ac.C_STALLED_STEPS]), steps=steps, decode_tokens=decode_tokens,
        prefill_tokens=prefill_tokens, compute_s=float(t[ac.T_COMPUTE]), transfer_s=float(t[ac.T_TRANSFER]),
        stall_s=float(t[ac.T_STALL]), total_time_s=float(t[ac.T_NOW]), prefill_time_s=float(t[ac.T_PREFILL]),
        decode_time_s=float(t[ac.T_DECODE]), routing_changed_fraction=_ratio(routing[0], steps),
        layer_hit_rates=[_ratio(h, a) for h, a in zip(tally.layer_hits, tally.layer_accesses)],
        **labels,
    )


def write_parquet(results: list[RunResult | dict[str, object]], path: Path) -> None:
    """All runs (results, or flat records such as `run`'s) as rows of one Parquet file, written atomically."""
    table = pa.Table.from_pylist([r if isinstance(r, dict) else r.to_dict() for r in results])
    tmp = temporary_sibling(path)
    try:
        pq.write_table(table, tmp)
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise
