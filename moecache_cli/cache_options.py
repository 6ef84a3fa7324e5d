"""The cache flags `simulate` and `run` share, defined once, and how they become a SimConfig's fields."""

from __future__ import annotations

from typing import Annotated

import typer

from simulator.hardware import available_presets, load_hardware
from simulator.policies import REGISTRY, make_params, policy_class
from simulator.prefetchers import PREFETCHERS
from traces.errors import MoecacheError
from traces.sizes import parse_size

Param = Annotated[list[str], typer.Option("--param", help="Policy parameter KEY=VALUE (repeatable), e.g. alpha=0.3, "
                                                          "gamma=0.02, eta=0.05 (watermark), decay_every=1000 (lfu), "
                                                          "decay=0.99 (affinity), small_ratio=0.1 (s3fifo).")]
Preset = Annotated[str, typer.Option(help=f"Hardware preset: {', '.join(available_presets())}, or a .toml path "
                                          "(e.g. one `moecache calibrate` wrote).")]
Vram = Annotated[str | None, typer.Option(help="VRAM for experts, e.g. 4GiB (default: the preset's). Includes the "
                                               "staging buffer of one expert.")]
VramExperts = Annotated[int | None, typer.Option(help="VRAM in experts instead of bytes (per layer with "
                                                      "--per-layer).")]
Ram = Annotated[str | None, typer.Option(help="Pinned RAM for experts, e.g. 16GiB (default: the preset's); 0 for no "
                                              "RAM tier.")]
RamExperts = Annotated[int | None, typer.Option(help="RAM in experts instead of bytes.")]
PerLayer = Annotated[bool, typer.Option("--per-layer/--global", help="One cache per layer (mixtral-offloading), or "
                                                                     "one for all.")]
Exclusive = Annotated[bool, typer.Option("--exclusive/--inclusive", help="Whether a VRAM expert is also kept in RAM "
                                                                         "(inclusive) or in one tier only.")]
CpuCompute = Annotated[bool, typer.Option("--cpu-compute", help="Compute VRAM misses on the CPU from RAM (Fiddler, "
                                                                "llama.cpp --cpu-moe).")]
Prefetch = Annotated[str, typer.Option(help=f"Prefetcher: {', '.join(PREFETCHERS)}.")]
PrefetchLimit = Annotated[int | None, typer.Option(help="Experts prefetched per step at most (default: top-k).")]
DEFAULT_PRESET = "desktop-24gb-pcie4"
BOUND = "belady"  # with bypass: the bound for every demand policy, run beside the chosen ones


def bound_params() -> object:
    return make_params(BOUND, {"bypass": 1})


def is_bound(policy: str, policy_params: object) -> bool:
    """Whether a run (its policy and the repr of its parameters) is the bound."""
    return policy == BOUND and "bypass=1" in str(policy_params)


def check_policies(policies: list[str], pairs: list[str]) -> None:
    """Unknown policies, and --param keys that none of the chosen policies has, are errors."""
    unknown = [p for p in policies if p not in REGISTRY]
    if unknown:
        raise MoecacheError(f"unknown policy '{unknown[0]}'; known: {', '.join(REGISTRY)}")
    known = {name for p in policies for name in policy_class(p).Params.__dataclass_fields__}
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep:
            raise MoecacheError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param alpha=0.3")
        if key.strip() not in known:
            raise MoecacheError(f"--param {key.strip()}: none of the chosen policies ({', '.join(policies)}) has it; "
                                f"their parameters: {', '.join(sorted(known)) or 'none'}")


def policy_params(policy: str, pairs: list[str]) -> object:
    """The policy's parameters with each --param KEY=VALUE that it has applied."""
    fields = policy_class(policy).Params.__dataclass_fields__
    wanted = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key.strip() in fields:
            wanted[key.strip()] = value.strip()
    return make_params(policy, wanted)


def cache_fields(preset: str, vram: str | None, vram_experts: int | None, ram: str | None, ram_experts: int | None,
                 per_layer: bool, exclusive: bool, cpu_compute: bool, prefetch: str,
                 prefetch_limit: int | None) -> dict[str, object]:
    """SimConfig fields from the shared flags."""
    if prefetch not in PREFETCHERS:
        raise MoecacheError(f"unknown prefetcher '{prefetch}'; known: {', '.join(PREFETCHERS)}")
    if prefetch_limit is not None and prefetch_limit < 1:
        raise MoecacheError("--prefetch-limit must be at least 1")
    return dict(hardware=load_hardware(preset), prefetch=prefetch, prefetch_limit=prefetch_limit,
                vram_bytes=parse_size(vram, "--vram"), vram_experts=vram_experts, ram_bytes=parse_size(ram, "--ram"),
                ram_experts=ram_experts, per_layer=per_layer, inclusive=not exclusive, cpu_compute=cpu_compute)
