"""Hand-built traces with hit counts, events and times worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator import events as ev
from simulator.hardware import load_hardware
from simulator.policies import REGISTRY
from simulator.replay import SimConfig, simulate

UNIT = load_hardware(Path(__file__).parent / "data" / "unit-hardware.toml")
ENGINES = ("fast", "reference")


def one_layer(make_trace, sequence):
    return make_trace([(t, 0, [e]) for t, e in enumerate(sequence)])


def run(path, policy, engine="fast", **options):
    options.setdefault("ram_bytes", 0)
    seen = []
    result = simulate(path, SimConfig(policy=policy, hardware=UNIT, engine=engine, **options),
                      on_events=lambda s, k, o: seen.extend(zip(s.tolist(), k.tolist(), o.tolist())))
    return result, seen


# Demand caching of 2 objects, one request per expert.
# 0 1 0 2 0 3 1: LRU keeps 0 hot (hits at t2, t4); FIFO evicts 0 at t3 (hit at t2 only);
#   LFU: 0 has count 2 > 1 at t3, so it stays (hits t2, t4); Belady evicts 1 at t3 (next use t6 > t4)
#   and hits t2, t4. Affinity and layer-LRU equal LRU with one layer and no prefetch.
# 0 1 2 0 1 3 0 1: LRU/FIFO/LFU always evict what comes next (0 hits); Belady keeps 0 (hits t3, t6).
# 0 0 1 2 0 1: LRU evicts 0 at t3 (hit t1 only); LFU evicts 1 (count 1 < 2) and hits t1, t4;
#   FIFO = LRU here; Belady evicts 1 (next t5 > t4): hits t1, t4.
# Watermark (alpha 0.5, eta 0.05) on 0 0 1 2 0 1: at t3 the three credits 0.1875, 0.25, 0.5 exceed the
#   watermark, which climbs by 0.025 per subgradient step to 0.2; 2 is admitted over 0 (lowest credit);
#   t4: 0 (0.594) replaces 1 (0.125); t5: 1 (0.5625) replaces 2 (0.125): one hit (t1).
HITS = {
    (0, 1, 0, 2, 0, 3, 1): dict(lru=2, fifo=1, lfu=2, belady=2, affinity=2, **{"layer-lru": 2}),
    (0, 1, 2, 0, 1, 3, 0, 1): dict(lru=0, fifo=0, lfu=0, belady=2, affinity=0, **{"layer-lru": 0}),
    (0, 0, 1, 2, 0, 1): dict(lru=1, fifo=1, lfu=2, belady=2, affinity=1, watermark=1, **{"layer-lru": 1}),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sequence", list(HITS))
def test_demand_caching_hits_by_hand(make_trace, sequence, engine):
    path = one_layer(make_trace, sequence)
    for policy, hits in HITS[sequence].items():
        result, _ = run(path, policy, engine, vram_experts=2)
        assert result.mode == "sequential demand caching"
        assert (policy, result.vram_hits) == (policy, hits)
        assert result.accesses == len(sequence)
        assert result.compulsory_misses == len(set(sequence))


@pytest.mark.parametrize("engine", ENGINES)
def test_two_tiers_inclusive_events_bytes_and_time(make_trace, engine):
    # VRAM 1 expert, RAM 2, LRU, trace 0 1 0 2 0 (1 MB experts; PCIe 1 ms, NVMe 2 ms + PCIe 1 ms):
    # t0 0 from NVMe; t1 1 from NVMe, 0 leaves VRAM but stays in RAM; t2 0 from RAM, 1 to RAM;
    # t3 2 from NVMe: RAM holds 1 (older) and 0, so 1 leaves RAM; t4 0 from RAM.
    path = one_layer(make_trace, [0, 1, 0, 2, 0])
    result, seen = run(path, "lru", engine, vram_experts=1, ram_experts=2)
    assert result.mode == "pinned steps"
    assert seen == [(0, ev.LOAD_NVME, 0), (1, ev.EVICT_VRAM, 0), (1, ev.LOAD_NVME, 1), (2, ev.EVICT_VRAM, 1),
                    (2, ev.LOAD_RAM, 0), (3, ev.EVICT_VRAM, 0), (3, ev.EVICT_RAM, 1), (3, ev.LOAD_NVME, 2),
                    (4, ev.EVICT_VRAM, 2), (4, ev.LOAD_RAM, 0)]
    assert (result.vram_hits, result.ram_hits, result.ram_misses) == (0, 2, 3)
    assert (result.evictions, result.evictions_ram) == (4, 1)
    assert (result.bytes_nvme_to_ram, result.bytes_ram_to_vram) == (3_000_000, 5_000_000)
    # stalls 3 + 3 + 1 + 3 + 1 ms, no compute: 11 ms for 5 tokens
    assert result.stall_s == pytest.approx(0.011)
    assert result.time_per_token_s == pytest.approx(0.0022)
    assert result.decode_tokens == 5
    assert result.stall_p50_ms == pytest.approx(3.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_exclusive_tiers_demote_victims(make_trace, engine):
    # VRAM 1, RAM 1, exclusive: t0 0 from NVMe; t1 1 from NVMe, 0 demoted to RAM; t2 0 from RAM
    # (leaves RAM), 1 demoted; t3 1 from RAM.
    path = one_layer(make_trace, [0, 1, 0, 1])
    result, seen = run(path, "lru", engine, vram_experts=1, ram_experts=1, inclusive=False)
    assert seen == [(0, ev.LOAD_NVME, 0), (1, ev.EVICT_VRAM, 0), (1, ev.DEMOTE, 0), (1, ev.LOAD_NVME, 1),
                    (2, ev.EVICT_VRAM, 1), (2, ev.DEMOTE, 1), (2, ev.LOAD_RAM, 0), (3, ev.EVICT_VRAM, 0),
                    (3, ev.DEMOTE, 0), (3, ev.LOAD_RAM, 1)]
    assert result.bytes_vram_to_ram == 3_000_000


@pytest.mark.parametrize("engine", ENGINES)
def test_prefill_step_larger_than_vram_streams_through_staging(make_trace, engine):
    # one prefill step of 3 tokens choosing 0, 1, 2 with room for 2: the third streams, not admitted
    path = make_trace([(0, 0, [0]), (1, 0, [1]), (2, 0, [2])], phase="prefill")
    result, seen = run(path, "lru", engine, vram_experts=2, sequential=False)
    assert seen == [(0, ev.LOAD_NVME, 0), (0, ev.LOAD_NVME, 1), (0, ev.STAGE_NVME, 2)]
    assert (result.staged, result.steps, result.prefill_tokens) == (1, 1, 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_cpu_compute_runs_misses_on_the_cpu(make_trace, engine):
    # VRAM 1, RAM 2: t0 0 read into RAM, computed on the CPU, copied to VRAM behind (FILL);
    # t1 0 hits; t2 1 computed on the CPU, fills VRAM (0 back to a RAM candidate); t3 0 in RAM: CPU.
    path = one_layer(make_trace, [0, 0, 1, 0])
    result, seen = run(path, "lru", engine, vram_experts=1, ram_experts=2, cpu_compute=True)
    assert seen == [(0, ev.CPU_NVME, 0), (0, ev.FILL, 0), (1, ev.HIT, 0), (2, ev.CPU_NVME, 1),
                    (2, ev.EVICT_VRAM, 0), (2, ev.FILL, 1), (3, ev.CPU_RAM, 0), (3, ev.EVICT_VRAM, 1),
                    (3, ev.FILL, 0)]
    assert result.cpu_computed == 3
    # t0: NVMe 0-2 ms, the copy follows 2-3 ms; t1 (at 2 ms) waits 1 ms for it; t2 (at 3 ms) reads 1
    # from NVMe 3-5 ms; t3 computes 0 from RAM at once: stalls 2 + 1 + 2 ms
    assert result.stall_s == pytest.approx(0.005)


@pytest.mark.parametrize("engine", ENGINES)
def test_lookahead_prefetch_counts(make_trace, engine):
    # two layers, one expert per layer in VRAM; layer 0 names layer 1's expert exactly.
    # t0: L0 0 miss, prefetch (1,2), L1 hit (used). t1: L0 1 miss, (1,2) already there, L1 plain hit.
    # t2: L0 0 miss, prefetch (1,3) evicting (1,2), L1 hit (used). 3 hits, 3 misses, 2 issued, 2 used.
    rows = [(0, 0, [0], [2]), (0, 1, [2], [-1]), (1, 0, [1], [2]), (1, 1, [2], [-1]), (2, 0, [0], [3]),
            (2, 1, [3], [-1])]
    path = make_trace(rows, num_layers=2, lookahead=True)
    result, seen = run(path, "lru", engine, vram_experts=1, per_layer=True, prefetch="lookahead")
    assert (result.vram_hits, result.vram_misses) == (3, 3)
    assert (result.prefetch_issued, result.prefetch_used, result.prefetch_wasted) == (2, 2, 0)
    assert result.prefetch_accuracy == 1.0
    assert result.prefetch_coverage == pytest.approx(2 / 5)
    assert (1, ev.PREFETCH_NVME, 6) not in seen and (4, ev.PREFETCH_NVME, 7) in seen


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_aware_routing_trades_weight_for_hits(make_trace, engine):
    # t0 routes to 1 (loaded). t1's router prefers 0 (2.0 vs 1.5); a bonus of 1 for resident 1 flips it.
    first, second = [0.0, 2.0, 0.0, 0.0], [2.0, 1.5, 0.0, 0.0]
    path = make_trace([(0, 0, [1], first), (1, 0, [0], second)], logits=True)
    plain, _ = run(path, "lru", engine, vram_experts=1)
    routed, _ = run(path, "lru", engine, vram_experts=1, routing_bonus=1.0)
    assert (plain.vram_hits, routed.vram_hits) == (0, 1)
    assert routed.routing_changed_steps == 1
    p = np.exp(second) / np.exp(second).sum()
    assert routed.routing_weight_lost == pytest.approx((p[0] - p[1]) / 2)


def test_registry_lists_every_required_policy():
    assert {"lru", "fifo", "lfu", "belady", "watermark", "affinity", "layer-lru"} <= set(REGISTRY)


def evictions(path, policy: str, engine: str, **options) -> tuple[list[int], int]:
    """(VRAM evictions in order, hits) of a hand-built trace."""
    evicted: list[int] = []

    def collect(steps, kinds, objects):
        evicted.extend(int(o) for o in objects[kinds == ev.EVICT_VRAM])

    result = simulate(path, SimConfig(policy=policy, hardware=load_hardware("desktop-24gb-pcie4"), engine=engine,
                                      **options), on_events=collect)
    return evicted, result.vram_hits


@pytest.mark.parametrize("engine", ["kernel", "reference"])
def test_s3fifo_by_hand_with_a_one_slot_small_queue(make_trace, engine):
    """Two slots: small 1 (at least one, where libCacheSim would cache nothing), main 1, ghost 1. a b a c b a d c:
    b enters main (small full, nothing evicted yet); c evicts a (count 1 < 2) into the ghost; a, a ghost hit,
    evicts c into the ghost and enters main; d: main is over its share, b is reinserted (count 1 -> 0) and a
    leaves; c, a ghost hit, evicts d."""
    a, b, c, d = range(4)
    path = make_trace([(t, 0, [x]) for t, x in enumerate([a, b, a, c, b, a, d, c])])
    assert evictions(path, "s3fifo", engine, vram_experts=2, ram_bytes=0) == ([a, c, a, d], 2)


@pytest.mark.parametrize("engine", ["kernel", "reference"])
def test_arc_by_hand(make_trace, engine):
    """Two slots, a b a c b a d c: a moves to T2; c evicts b (T1 over p = 0) into B1; b, a B1 hit, raises p to 1
    and evicts a from T2 (T1 = p) into B2; a, a B2 hit, lowers p to 0 and evicts c into B1; d evicts b from T2
    (T1 empty); c, a B1 hit, raises p to 1 and evicts a from T2. libCacheSim's ARC also misses 7 times here."""
    a, b, c, d = range(4)
    path = make_trace([(t, 0, [x]) for t, x in enumerate([a, b, a, c, b, a, d, c])])
    assert evictions(path, "arc", engine, vram_experts=2, ram_bytes=0) == ([b, a, c, b, a], 1)
