"""Properties on random traces: Belady is never beaten, LRU never loses with more room, bytes add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import events as ev
from simulator.hardware import load_hardware
from simulator.policies import make_params
from simulator.drivers import ReferenceDriver
from simulator.prefetchers import plan
from simulator.replay import SimConfig, prepare, simulate
from simulator.steps import iter_steps
from traces.reader import open_trace

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
def test_bytes_and_time_add_up(make_trace, experts, vram, extra, policy, inclusive, prefetch):
    path = write(make_trace, experts)
    size = 1_000_000
    result = simulate(path, SimConfig(policy=policy, hardware=UNIT, vram_experts=2 * vram, ram_experts=2 * (vram + extra),
                                      per_layer=True, inclusive=inclusive, prefetch=prefetch))
    assert result.accesses == len(experts)
    assert result.vram_misses == result.ram_hits + result.ram_misses
    moved = result.vram_misses + result.prefetch_issued
    assert result.bytes_ram_to_vram == moved * size
    assert result.bytes_nvme_to_ram % size == 0 and result.bytes_nvme_to_ram <= (result.ram_misses + result.prefetch_issued
                                                                                 + result.steps) * size
    assert result.prefetch_used + result.prefetch_wasted <= result.prefetch_issued
    # compute is free on this preset: time passes only while a step waits for its transfers, which can
    # last no longer than the links are busy, and a decode token's time is its layers' steps
    assert result.total_time_s == pytest.approx(result.stall_s)
    assert result.total_time_s <= result.transfer_s + 1e-12
    assert result.time_per_token_s * result.decode_tokens == pytest.approx(result.decode_time_s)


def planned_steps(path, config):
    """Yield (step, its events, the planner) after each step of the reference planner, driven step by step."""
    trace = open_trace(path)
    prep = prepare(trace, config)
    driver = ReferenceDriver(config, prep.params, prep.vram, prep.ram, prep.resolved, prep.live_future)
    step0 = acc0 = 0
    try:
        for steps in iter_steps(trace):
            ptr, hints = plan(prep.prefetcher, steps)
            nexts = prep.next_uses(acc0, steps)
            for s in range(len(steps)):
                a0, a1 = steps.ptr[s], steps.ptr[s + 1]
                events = driver.cache.step(step0 + s, int(steps.layer[s]), steps.objects[a0:a1].tolist(),
                                           None if nexts is None else nexts[a0:a1], hints[ptr[s]:ptr[s + 1]])
                yield step0 + s, events, driver.cache
            step0 += len(steps)
            acc0 += steps.accesses
    finally:
        prep.close()


@SETTINGS
@given(experts=routes, vram=st.integers(1, 3), extra=st.integers(0, 4), policy=st.sampled_from(ONLINE + ("belady",)),
       inclusive=st.booleans(), prefetch=st.sampled_from(["none", "affinity", "transitions"]),
       per_layer=st.booleans(), cpu_compute=st.booleans())
def test_every_tier_and_layer_stays_within_capacity_at_every_step(make_trace, experts, vram, extra, policy, inclusive,
                                                                  prefetch, per_layer, cpu_compute):
    path = write(make_trace, experts)
    layers, e = 2, 6
    vram_cap, ram_cap = (vram, vram + extra) if per_layer else (2 * vram, 2 * (vram + extra))
    config = SimConfig(policy=policy, hardware=UNIT, vram_experts=vram_cap, ram_experts=ram_cap, per_layer=per_layer,
                       inclusive=inclusive, prefetch=prefetch, cpu_compute=cpu_compute)
    in_vram_by_events: set[int] = set()
    for step, events, cache in planned_steps(path, config):
        for _, kind, obj in events:
            if kind in (ev.LOAD_RAM, ev.LOAD_NVME, ev.PREFETCH_RAM, ev.PREFETCH_NVME, ev.FILL):
                in_vram_by_events.add(obj)
            elif kind == ev.EVICT_VRAM:
                in_vram_by_events.remove(obj)
        vram_now, ram_now = np.flatnonzero(cache.in_vram), np.flatnonzero(cache.in_ram)
        assert set(vram_now.tolist()) == in_vram_by_events, step  # the events say what VRAM holds
        for held, cap in ((vram_now, vram_cap), (ram_now, ram_cap)):
            per = np.bincount(held // e, minlength=layers)
            assert (per <= cap).all() if per_layer else per.sum() <= cap, (step, per, cap)
        if not inclusive:
            assert not (cache.in_vram & cache.in_ram).any(), step
