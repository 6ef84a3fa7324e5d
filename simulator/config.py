"""What one run depends on besides the trace, and the capacities it resolves to per partition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.cache import CacheConfig
from simulator.hardware import Hardware
from traces.errors import MoecacheError
from traces.reader import Trace


SEQUENTIAL_MODE = "sequential demand caching"  # one cache, no RAM tier: libCacheSim's setting


@dataclass(frozen=True)
class SimConfig:
    """Everything a run depends on besides the trace. Capacities: bytes, or experts (which win)."""

    policy: str
    hardware: Hardware
    params: object | None = None
    prefetch: str = "none"
    prefetch_limit: int | None = None  # default: top-k
    vram_bytes: int | None = None  # default: the preset's
    vram_experts: int | None = None  # in all, or per layer with per_layer
    ram_bytes: int | None = None  # default: the preset's; 0: no RAM tier
    ram_experts: int | None = None
    per_layer: bool = False
    inclusive: bool = True
    cpu_compute: bool = False
    sequential: bool | None = None  # default: only for --global with no RAM tier (plain demand caching)
    routing_bonus: float | None = None
    precision: str | None = None
    engine: str = "fast"  # "kernel": the general kernel even where the demand loop applies; "reference"


@dataclass(frozen=True)
class Resolved:
    """Capacities per partition and the mode, after checking they can work."""

    cache: CacheConfig
    vram_bytes: int
    ram_bytes: int
    mode: str


def resolve(config: SimConfig, trace: Trace, sizes: np.ndarray) -> Resolved:
    """Capacities per partition; one clear line if a tier cannot hold what one step needs."""
    meta = trace.meta
    layers, e, k = meta.num_layers, meta.num_experts, meta.top_k
    layer_size = sizes.reshape(layers, e).max(axis=1)
    parts = layers if config.per_layer else 1

    def capacity(experts: int | None, nbytes: int | None) -> np.ndarray:
        if experts is not None:
            return (experts * layer_size) if config.per_layer else np.array([experts * int(layer_size.max())])
        return np.full(parts, int(nbytes) // parts, np.int64)

    hw = config.hardware
    vram = capacity(config.vram_experts, config.vram_bytes if config.vram_bytes is not None else hw.vram_bytes)
    ram_total = config.ram_bytes if config.ram_bytes is not None else hw.ram_bytes
    no_ram = config.ram_experts == 0 if config.ram_experts is not None else ram_total == 0
    ram = None if no_ram else capacity(config.ram_experts, ram_total)
    sequential = config.sequential if config.sequential is not None else (ram is None and not config.per_layer)
    need_each = (layer_size if config.per_layer else np.array([layer_size.max()])).astype(np.int64)
    staging = 0 if sequential or config.vram_experts is not None else int(layer_size.max())
    vram = vram.astype(np.int64) - staging
    need = need_each * (1 if sequential else k)
    short = np.flatnonzero(vram < need)
    if len(short):
        p = int(short[0])
        where = f"layer {p}'s share of " if config.per_layer else ""
        extra = f" plus the {staging:,} B staging buffer" if staging else ""
        raise MoecacheError(
            f"{where}VRAM ({int(vram[p] + staging):,} B) cannot hold one step's "
            f"{int(need[p] // need_each[p])} expert(s) of {int(need_each[p]):,} B{extra}; raise --vram "
            f"(or --vram-experts) to at least {int(need[p] + staging) * parts:,} B")
    if ram is not None and config.inclusive and (ram < vram + staging).any():
        raise MoecacheError("inclusive tiers need RAM at least as large as VRAM (every VRAM expert is also in "
                            "RAM); raise --ram, or use --exclusive, or --ram 0 for no RAM tier")
    mode = SEQUENTIAL_MODE if sequential else "pinned steps"
    cache = CacheConfig(vram=vram, ram=ram, per_layer=config.per_layer, inclusive=config.inclusive,
                        sequential=sequential, cpu_compute=config.cpu_compute, routing_bonus=config.routing_bonus)
    return Resolved(cache, int(vram.sum()), 0 if ram is None else int(ram.sum()), mode)
