"""Hardware presets (`data/hardware/*.toml`) and the cost model built from them (DESIGN.md section 6).

A transfer of b bytes over a link costs latency + b / bandwidth; links are queues, so transfers
issued together finish one after another. An expert computing n tokens costs
overhead + max(2 * params * n / FLOP/s, bytes / memory bandwidth) on the GPU (or the CPU in
cpu-compute mode), where the fixed overhead is the launch sequence of one expert: for small experts
it dominates (DESIGN.md section 6). The overheads are optional in a preset (0 when absent).
Precision tiers count bytes by precision: `expert_sizes` scales the trace's bytes per expert by
bits(precision) / bits(dtype). Attention and dense layers are not modelled, so predicted times are
those of the expert path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from traces.data_files import available, read_record
from traces.errors import MoecacheError
from traces.model_specs import BITS_PER_PARAM
from traces.schema import TraceMeta


OPTIONAL = ("gpu_expert_overhead_s", "cpu_expert_overhead_s")


@dataclass(frozen=True)
class Hardware:
    name: str
    description: str
    vram_bytes: int
    ram_bytes: int
    pcie_bandwidth: float  # B/s, host to device
    pcie_latency_s: float
    nvme_bandwidth: float  # B/s, sequential read
    nvme_latency_s: float
    gpu_flops: float  # dense FLOP/s at the model's precision
    gpu_memory_bandwidth: float  # B/s
    cpu_flops: float
    cpu_memory_bandwidth: float
    dtypes: list[str] = field(default_factory=list)  # weight precisions the GPU computes
    gpu_expert_overhead_s: float = 0.0  # fixed cost of computing one expert (kernel launches), beside its bytes
    cpu_expert_overhead_s: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)

    def pcie_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        return self.pcie_latency_s + nbytes / self.pcie_bandwidth

    def nvme_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        return self.nvme_latency_s + nbytes / self.nvme_bandwidth


def available_presets() -> list[str]:
    return available("hardware")


def load_hardware(name_or_path: str | Path) -> Hardware:
    """A preset by shipped name (`desktop-24gb-pcie4`) or by the path of a TOML file of the same form."""
    path, hw = read_record(name_or_path, "hardware", "hardware preset", Hardware)
    optional = {name for name in OPTIONAL if getattr(hw, name) == 0.0}
    missing = sorted(set(Hardware.__dataclass_fields__) - {"name", "description", "sources"} - optional
                     - set(hw.sources))
    if missing:
        raise MoecacheError(f"{path}: [sources] must say where each figure comes from; missing: {', '.join(missing)}")
    unknown = sorted(set(hw.dtypes) - set(BITS_PER_PARAM))
    if unknown:
        raise MoecacheError(f"{path}: dtypes {unknown} unknown; use {', '.join(BITS_PER_PARAM)}")
    return hw


def expert_sizes(meta: TraceMeta, precision: str | None = None) -> np.ndarray:
    """(L*E,) bytes of every (layer, expert) object at `precision` (default: the trace's dtype)."""
    sizes = np.repeat(np.array([meta.expert_bytes(layer) for layer in range(meta.num_layers)], np.float64),
                      meta.num_experts)
    if precision is not None and precision != meta.dtype:
        if precision not in BITS_PER_PARAM:
            raise MoecacheError(f"unknown precision '{precision}'; use one of {', '.join(BITS_PER_PARAM)}")
        if meta.dtype not in BITS_PER_PARAM:
            raise MoecacheError(f"the trace's dtype '{meta.dtype}' has no known size; --precision needs one of "
                                f"{', '.join(BITS_PER_PARAM)}")
        sizes = sizes * BITS_PER_PARAM[precision] / BITS_PER_PARAM[meta.dtype]
    return np.maximum(np.round(sizes), 1).astype(np.int64)


def check_dtype(hw: Hardware, dtype: str, where: str) -> None:
    """The preset's GPU must compute the weights' precision; otherwise one line naming the fix."""
    if hw.dtypes and dtype not in hw.dtypes:
        raise MoecacheError(f"{where}: weights in {dtype}, but preset '{hw.name}' computes only "
                            f"{', '.join(hw.dtypes)}; choose another --preset or --precision")


def params_per_expert(sizes: np.ndarray, dtype: str) -> np.ndarray:
    """Parameters of each object, from its bytes at the trace's dtype."""
    return sizes * 8.0 / BITS_PER_PARAM.get(dtype, 16.0)
