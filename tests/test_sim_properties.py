"""Properties on random traces: Belady is never beaten, LRU never loses with more room, bytes add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import events as ev
from simulator.hardware import load_hardware
from simulator.policies import make_params
from simulator.replay import SimConfig, simulate

UNIT = load_hardware(Path(__file__).parent / "data" / "unit-hardware.toml")
ONLINE = ("lru", "fifo", "lfu", "affinity", "layer-lru", "watermark")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

routes = st.lists(st.integers(0, 5), min_size=1, max_size=60)


def write(make_trace, experts, layers=2, top_k=1):
    rows = [(i // layers, i % layers, [e]) for i, e in enumerate(experts)]
    return make_trace(rows, num_layers=layers, num_experts=6, top_k=top_k)


def misses(path, policy, capacity, **options):
    options.setdefault("ram_bytes", 0)
    return simulate(path, SimConfig(policy=policy, hardware=UNIT, vram_experts=capacity, **options)).vram_misses


@SETTINGS
@given(experts=routes, capacity=st.integers(1, 12), per_layer=st.booleans())
def test_no_online_policy_beats_belady(make_trace, experts, capacity, per_layer):
    """Classic MIN bounds the policies that admit every miss; MIN with bypass bounds them all
    (watermark-credit may bypass, and can beat classic MIN)."""
    path = write(make_trace, experts)
    options = dict(per_layer=per_layer, sequential=True)
    bound = misses(path, "belady", capacity, **options)
    bound_bypass = misses(path, "belady", capacity, params=make_params("belady", {"bypass": 1}), **options)
    assert bound_bypass <= bound
    for policy in ONLINE:
        found = misses(path, policy, capacity, **options)
        assert found >= bound_bypass, policy
        if policy != "watermark":
            assert found >= bound, policy


@SETTINGS
@given(experts=routes, capacity=st.integers(1, 11))
def test_lru_never_loses_with_a_bigger_cache(make_trace, experts, capacity):
    path = write(make_trace, experts)
    assert misses(path, "lru", capacity + 1) <= misses(path, "lru", capacity)


@SETTINGS
@given(experts=routes, vram=st.integers(1, 3), extra=st.integers(0, 4), policy=st.sampled_from(ONLINE + ("belady",)),
       inclusive=st.booleans(), prefetch=st.sampled_from(["none", "affinity", "transitions"]))
def test_bytes_and_capacity_add_up(make_trace, experts, vram, extra, policy, inclusive, prefetch):
    path = write(make_trace, experts)
    size = 1_000_000
    occupancy = {"vram": set(), "ram": set()}
    worst = {"vram": 0, "ram": 0}

    def watch(steps, kinds, objects):
        for kind, obj in zip(kinds.tolist(), objects.tolist()):
            if kind in (ev.LOAD_RAM, ev.LOAD_NVME, ev.PREFETCH_RAM, ev.PREFETCH_NVME, ev.FILL):
                occupancy["vram"].add(obj)
            elif kind == ev.EVICT_VRAM:
                occupancy["vram"].discard(obj)
            worst["vram"] = max(worst["vram"], len(occupancy["vram"]))

    result = simulate(path, SimConfig(policy=policy, hardware=UNIT, vram_experts=2 * vram, ram_experts=2 * (vram + extra),
                                      per_layer=True, inclusive=inclusive, prefetch=prefetch), on_events=watch)
    assert result.accesses == result.vram_hits + result.vram_misses == len(experts)
    assert result.vram_misses == result.ram_hits + result.ram_misses
    moved = result.vram_misses + result.prefetch_issued
    assert result.bytes_ram_to_vram == moved * size
    assert result.bytes_nvme_to_ram % size == 0 and result.bytes_nvme_to_ram <= (result.ram_misses + result.prefetch_issued
                                                                                 + result.steps) * size
    assert worst["vram"] <= 2 * vram * 2  # two layers, `2 * vram` per layer at most
    assert result.prefetch_used + result.prefetch_wasted <= result.prefetch_issued
    assert np.isclose(result.total_time_s, result.compute_s + result.stall_s)
