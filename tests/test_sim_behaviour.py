"""Behaviour that hand-worked traces pin down: the cost model with nothing free, each prefetcher's hints,
re-routing against brute force, LFU decay, watermark's terms, multi-layer policies, exclusive tiers with
cpu-compute and prefetch, read-ahead, the kernel's event buffer filling up, numba's cache folder and one
kernel per policy. Every expected value is worked out in the comments, never printed by the code under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import drivers
from simulator import events as ev
from simulator.hardware import load_hardware
from simulator.policies import make_params
from simulator.policies.base import TierView
from simulator.policies.watermark import WatermarkCredit
from simulator.prefetchers import make_prefetcher, plan
from simulator.replay import SimConfig, simulate
from simulator.routing import reroute
from simulator.steps import iter_steps
from traces.reader import open_trace

DATA = Path(__file__).parent / "data"
UNIT = load_hardware(DATA / "unit-hardware.toml")
COSTLY = load_hardware(DATA / "costly-hardware.toml")
ENGINES = ("fast", "reference")


def run(path, policy="lru", engine="fast", hardware=UNIT, **options):
    options.setdefault("ram_bytes", 0)
    seen = []
    result = simulate(path, SimConfig(policy=policy, hardware=hardware, engine=engine, **options),
                      on_events=lambda s, k, o: seen.extend(zip(s.tolist(), k.tolist(), o.tolist())))
    return result, seen


@pytest.mark.parametrize("engine", ENGINES)
def test_cost_model_with_latency_fixed_cost_and_a_prefill(make_trace, engine, tmp_path):
    # One layer, 1 MB experts (5e5 bf16 parameters: 1e6 FLOP per token = 1 us at 1e12 FLOP/s, floor
    # 1e6 B / 1e9 B/s = 1 ms), so computing an expert costs 0.5 + max(0.001, 1) = 1.5 ms. NVMe 0.2 + 2 =
    # 2.2 ms, PCIe 0.1 + 1 = 1.1 ms. VRAM 2 experts, no RAM tier, whole steps pinned.
    # step 0, prefill of tokens 0, 1 choosing 0 and 1: NVMe 0-2.2, 2.2-4.4; PCIe 2.2-3.3, 4.4-5.5;
    #   stall 5.5, compute 2 x 1.5 = 3: ends at 8.5 ms.
    # step 1, decode 0: a hit (in VRAM since 3.3): compute 1.5, ends at 10.0.
    # step 2, decode 2: evicts 1 (0 was used later); NVMe 10-12.2, PCIe 12.2-13.3: stall 3.3; ends at 14.8.
    prefill = make_trace([(0, 0, [0]), (1, 0, [1])], phase="prefill")
    decode = make_trace([(2, 0, [0]), (3, 0, [2])])
    path = tmp_path / "joined.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.concat_tables([pq.read_table(prefill), pq.read_table(decode)])
    pq.write_table(table, path)
    result, seen = run(path, engine=engine, hardware=COSTLY, vram_experts=2, sequential=False)
    assert [k for _, k, _ in seen] == [ev.LOAD_NVME, ev.LOAD_NVME, ev.HIT, ev.EVICT_VRAM, ev.LOAD_NVME]
    assert result.total_time_s == pytest.approx(0.0148)
    assert result.prefill_time_s == pytest.approx(0.0085) and result.prefill_tokens == 2
    assert result.decode_time_s == pytest.approx(0.0063) and result.decode_tokens == 2
    assert result.time_per_token_s == pytest.approx(0.00315)
    assert result.stall_s == pytest.approx(0.0088) and result.compute_s == pytest.approx(0.006)
    assert result.transfer_s == pytest.approx(3 * 0.0022 + 3 * 0.0011)
    assert result.stall_p50_ms == pytest.approx(4.4)  # median of the stalled steps' 5.5 and 3.3 ms


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prefetch_in_flight_delays_the_step_that_needs_it(make_trace, engine):
    # Two layers, one expert per layer in VRAM. Token 0: layer 0 needs 0 (NVMe 0-2.2, PCIe 2.2-3.3:
    # stall 3.3) and its lookahead names layer 1's expert 1 (object 5): NVMe 2.2-4.4, PCIe 4.4-5.5.
    # Layer 0 computes 3.3-4.8; layer 1 hits 5 but waits until 5.5 (stall 0.7), computes to 7.0.
    path = make_trace([(0, 0, [0], [1]), (0, 1, [1], [-1])], num_layers=2, lookahead=True)
    result, seen = run(path, engine=engine, hardware=COSTLY, vram_experts=1, per_layer=True,
                       prefetch="lookahead")
    assert seen == [(0, ev.LOAD_NVME, 0), (0, ev.PREFETCH_NVME, 5), (1, ev.HIT, 5)]
    assert result.stall_s == pytest.approx(0.004) and result.time_per_token_s == pytest.approx(0.007)
    assert (result.prefetch_issued, result.prefetch_used) == (1, 1)


@pytest.mark.parametrize("engine", ENGINES)
def test_cpu_compute_costs_the_cpu_rates(make_trace, engine):
    # cpu-compute, VRAM 1, RAM 2, one expert 0 used twice with 1 going between: t0 0 read from NVMe
    # (0-2.2 ms) and computed on the CPU: 1 + max(1e6 / 1e11 = 0.01 ms, 1e6 / 0.25e9 = 4 ms) = 5 ms, ends at
    # 7.2; the fill to VRAM runs 2.2-3.3 behind it. t1 0 hits: GPU 1.5 ms, ends 8.7.
    path = make_trace([(0, 0, [0]), (1, 0, [0])])
    result, seen = run(path, engine=engine, hardware=COSTLY, vram_experts=1, ram_experts=2, cpu_compute=True)
    assert seen == [(0, ev.CPU_NVME, 0), (0, ev.FILL, 0), (1, ev.HIT, 0)]
    assert result.total_time_s == pytest.approx(0.0087) and result.stall_s == pytest.approx(0.0022)


def hints_of(path, prefetcher, limit, layers=2, experts=4):
    trace = open_trace(path)
    made = make_prefetcher(prefetcher, layers, experts, limit)
    out = []
    for steps in iter_steps(trace, lookahead=prefetcher == "lookahead"):
        ptr, objects = plan(made, steps)
        out += [objects[ptr[s]:ptr[s + 1]].tolist() for s in range(len(steps))]
    return out


def test_affinity_prefetcher_names_the_next_layers_most_recent_choices(make_trace):
    # steps: (t0, L0, 0) (t0, L1, 1) (t1, L0, 2) (t1, L1, 3); it predicts the next layer (L1 after L0, L0
    # after L1) by when its experts were last chosen, never-chosen ones not at all:
    # s0: nothing chosen at L1 yet; s1: L0's 0 (object 0); s2: L1's 1 (object 5); s3: L0's 2 (object 2).
    path = make_trace([(0, 0, [0]), (0, 1, [1]), (1, 0, [2]), (1, 1, [3]), (2, 0, [1])], num_layers=2)
    assert hints_of(path, "affinity", 1) == [[], [0], [5], [2], [7]]
    # with 2 allowed: s3 names L0's 2 (chosen at s2), then 0 (s0); s4 L1's 3 (s3), then 1 (s1)
    assert hints_of(path, "affinity", 2)[3:] == [[2, 0], [7, 5]]


def test_transition_prefetcher_learns_layer_to_layer_counts(make_trace):
    # t0: 0 -> 1, t1: 0 -> 2, t2: 0 -> ?  At (t2, L0) the counts from 0 are {1: 1, 2: 1}: ties go to the
    # lower id, so limit 1 names 1 (object 5) and limit 2 names 1, 2 (objects 5, 6). Last layer: nothing.
    rows = [(0, 0, [0]), (0, 1, [1]), (1, 0, [0]), (1, 1, [2]), (2, 0, [0]), (2, 1, [2])]
    path = make_trace(rows, num_layers=2)
    assert hints_of(path, "transitions", 1) == [[], [], [5], [], [5], []]
    assert hints_of(path, "transitions", 2)[4] == [5, 6]


def test_lookahead_prefetcher_dedupes_and_limits(make_trace):
    # a prefill step of two tokens whose lookaheads name 3, 1 and 3, 2: in order, without repeats: 3, 1, 2
    rows = [(0, 0, [0, 1], [3, 1]), (1, 0, [2, 1], [3, 2])]
    path = make_trace(rows, num_layers=2, top_k=2, lookahead=True, phase="prefill")
    assert hints_of(path, "lookahead", 8) == [[7, 5, 6]]
    assert hints_of(path, "lookahead", 2) == [[7, 5]]


@settings(max_examples=200, deadline=None)
@given(logits=st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), min_size=6, max_size=6),
       resident=st.lists(st.booleans(), min_size=6, max_size=6), k=st.integers(1, 3),
       bonus=st.sampled_from([0.0, 0.5, 1.0, 3.0]), order=st.permutations(range(6)), top=st.booleans())
def test_rerouting_equals_brute_force_with_ties(logits, resident, k, bonus, order, top):
    """The new choice is the top-k of the boosted scores (ties: lower id); the weight lost is the softmax
    mass of the recorded choice minus that of the new one, never negative. The recorded choice is the
    raw top-k or any k experts in any order (the one-pass check for an unchanged set must not rely on it)."""
    raw = np.array(logits)
    recorded = sorted(range(6), key=lambda e: (-raw[e], e))[:k] if top else list(order[:k])
    boosted = [raw[e] + (bonus if resident[e] else 0.0) for e in range(6)]
    want = sorted(range(6), key=lambda e: (-boosted[e], e))[:k]
    p = np.exp(raw) / np.exp(raw).sum()
    chosen, lost = reroute(raw.astype(np.float32), np.array(recorded, np.int16), np.array(resident), bonus)
    assert chosen.tolist() == want
    assert lost == pytest.approx(max(0.0, p[recorded].sum() - p[want].sum()), abs=1e-12)


def test_float16_bits_widen_exactly():
    """The kernels read logits as float16 bits: every one of the 65,536 values widens as numpy's astype does
    (subnormals, infinities and NaN included)."""
    from numba import njit

    from simulator.half import bits, widen

    every = np.arange(1 << 16, dtype=np.uint16)
    widened = njit(lambda b: [widen(x) for x in b])(every)
    assert np.array_equal(np.array(widened, np.float32), every.view(np.float16).astype(np.float32), equal_nan=True)
    assert bits(np.array([1.0, -2.5], np.float32)).tolist() == [0x3C00, 0xC100]


@pytest.mark.parametrize("engine", ENGINES)
def test_lfu_decay_halves_counts(make_trace, engine):
    # capacity 2: 0 0 0 1 1 2 1. Without decay, at t5 the counts are 0: 3, 1: 2, so 1 goes and t6 misses:
    # hits t1, t2, t4. With decay every 5 steps, the 5th step (t4) halves them first (0: 1, 1: 1), t4 makes
    # 1's count 2, and at t5 0 goes (count 1): t6 hits too.
    path = make_trace([(t, 0, [e]) for t, e in enumerate([0, 0, 0, 1, 1, 2, 1])])
    plain, _ = run(path, "lfu", engine, vram_experts=2)
    aged, seen = run(path, "lfu", engine, vram_experts=2, params=make_params("lfu", {"decay_every": 5}))
    assert (plain.vram_hits, aged.vram_hits) == (3, 4)
    assert (5, ev.EVICT_VRAM, 0) in seen


MULTI = [(0, 0, [0]), (0, 1, [0]), (1, 0, [1]), (1, 1, [0]), (2, 0, [2]), (2, 1, [0]), (3, 0, [0])]


@pytest.mark.parametrize("engine", ENGINES)
def test_layer_lru_and_affinity_over_two_layers(make_trace, engine):
    # Objects (layer * 4 + expert): 0 4 1 4 2 4 0, one global cache of 3.
    # LRU: at step 4 (needs 2) it evicts 0 (least recent); step 5 hits 4; step 6 misses 0: hits at 3, 5.
    # layer-LRU evicts from the layer furthest ahead of the current one first: at step 4 (layer 0) that is
    # layer 1's 4; step 5 (layer 1) misses 4 and evicts layer 0's least recent, 0; step 6 misses 0: hit at 3.
    # Affinity orders by the step each object was last chosen, which here is LRU's order: hits at 3, 5.
    path = make_trace(MULTI, num_layers=2)
    hits = {p: run(path, p, engine, vram_experts=3)[0].vram_hits for p in ("lru", "layer-lru", "affinity")}
    assert hits == {"lru": 2, "layer-lru": 1, "affinity": 2}


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_keeps_prefetched_experts_cold(make_trace, engine):
    # Two layers, one global cache of 2, lookahead names layer 1's expert 3 (object 7) at every token,
    # which is never chosen. t0: 0 loads, 7 prefetched; layer 1 needs 4 (expert 0): LRU evicts 0 (7 was
    # inserted later), affinity evicts 7 (never chosen). t1: layer 0 needs 0 again: LRU misses; affinity
    # keeps 0 and hits.
    rows = [(0, 0, [0], [3]), (0, 1, [0], [-1]), (1, 0, [0], [3]), (1, 1, [0], [-1])]
    path = make_trace(rows, num_layers=2, lookahead=True)
    lru, _ = run(path, "lru", engine, vram_experts=2, prefetch="lookahead", sequential=False)
    affinity, _ = run(path, "affinity", engine, vram_experts=2, prefetch="lookahead", sequential=False)
    assert affinity.vram_hits > lru.vram_hits


def watermark_tier(per_layer=False, capacity=(2,), layers=2, experts=2):
    n = layers * experts
    return TierView(layers, experts, np.ones(n, np.int64), np.ones(n), np.array(capacity), per_layer)


def test_watermark_credit_terms_by_hand():
    # alpha 0.5, gamma 0.5: after layer 0 chose expert 0, p = 0.5 for object 0; from layer 0, layer 1 is one
    # step away: an object there with p = 0.25 has credit 0.25 * exp(-0.5).
    policy = WatermarkCredit(make_params("watermark", {"gamma": 0.5, "alpha": 0.5}), watermark_tier())
    policy.on_step(0, 1, [2])  # layer 1 chose object 2: p = 0.5
    policy.on_step(1, 1, [3])  # ... then object 3: p(2) = 0.25, p(3) = 0.5
    policy.on_step(2, 0, [0])  # a new token at layer 0: p(0) = 0.5
    assert policy.credit(0) == pytest.approx(0.5)
    assert policy.credit(2) == pytest.approx(0.25 * np.exp(-0.5))
    # a hint fuses the prediction: 1 - (1 - 0.25)(1 - 0.8) = 0.85, this step only
    fused = WatermarkCredit(make_params("watermark", {"gamma": 0.5, "lookahead_weight": 0.8}), watermark_tier())
    for step, layer, chosen in ((0, 1, [2]), (1, 1, [3]), (2, 0, [0])):
        fused.on_step(step, layer, chosen)
    fused.on_hint(2, [2])
    assert fused.credit(2) == pytest.approx(0.85 * np.exp(-0.5))
    fused.on_step(3, 1, [3])
    assert fused.credit(2) == pytest.approx(0.125)  # no longer hinted; decayed once more, distance 0


def test_watermark_adapts_each_partition_and_stops_at_the_iteration_cap():
    # Per layer, capacity 1 object each. Layer 0 has two positive credits (demand 2 > 1), layer 1 none.
    # Each subgradient step adds eta * (2 - 1) / 1 = 0.1 to layer 0's watermark until only one credit
    # (0.25 vs 0.5) stays above it: 0.1, 0.2, 0.3 -> 3 steps; with max_iters 2 it stops at 0.2.
    for iters, want in ((32, 0.3), (2, 0.2)):
        params = make_params("watermark", {"eta": 0.1, "max_iters": iters, "gamma": 0.0})
        policy = WatermarkCredit(params, watermark_tier(per_layer=True, capacity=(1, 1)))
        policy.on_step(0, 0, [0])
        policy.on_step(1, 0, [1])  # p(0) = 0.25, p(1) = 0.5; step 1 is not a new token: no adaptation
        policy.on_step(2, 1, [])
        policy.on_step(3, 0, [])  # a new token: both partitions adapt once, with p(0) = 0.125, p(1) = 0.25
        assert policy.watermark[1] == 0.0
        assert policy.watermark[0] == pytest.approx(want if iters == 2 else 0.2)


@pytest.mark.parametrize("engine", ENGINES)
def test_exclusive_tiers_with_prefetch(make_trace, engine):
    # Two layers, global VRAM 2, RAM 1, exclusive. s0: 0 from NVMe; the lookahead's object 5 fits: prefetched.
    # s1: 5 hits. s2: 2 needs room: 0 (least recent) goes down to RAM; then the prefetch of 7 evicts 5,
    # which goes down to RAM in place of 0. s3: 7 hits.
    rows = [(0, 0, [0], [1]), (0, 1, [1], [-1]), (1, 0, [2], [3]), (1, 1, [3], [-1])]
    path = make_trace(rows, num_layers=2, lookahead=True)
    result, seen = run(path, "lru", engine, vram_experts=2, ram_experts=1, inclusive=False, prefetch="lookahead")
    assert seen == [(0, ev.LOAD_NVME, 0), (0, ev.PREFETCH_NVME, 5), (1, ev.HIT, 5),
                    (2, ev.EVICT_VRAM, 0), (2, ev.DEMOTE, 0), (2, ev.LOAD_NVME, 2), (2, ev.EVICT_VRAM, 5),
                    (2, ev.EVICT_RAM, 0), (2, ev.DEMOTE, 5), (2, ev.PREFETCH_NVME, 7), (3, ev.HIT, 7)]
    assert (result.prefetch_issued, result.prefetch_used, result.bytes_vram_to_ram) == (2, 2, 2_000_000)


@pytest.mark.parametrize("engine", ENGINES)
def test_exclusive_tiers_with_cpu_compute(make_trace, engine):
    # One layer, VRAM 1, RAM 1, exclusive, cpu-compute; 0 1 0. s0: 0 read into RAM, computed on the CPU, moved
    # up to VRAM. s1: the same for 1, and 0 goes down to the freed RAM slot. s2: 0 from RAM on the CPU,
    # moved up; 1 goes down.
    path = make_trace([(0, 0, [0]), (1, 0, [1]), (2, 0, [0])])
    _, seen = run(path, "lru", engine, vram_experts=1, ram_experts=1, inclusive=False, cpu_compute=True)
    assert seen == [(0, ev.CPU_NVME, 0), (0, ev.FILL, 0), (1, ev.CPU_NVME, 1), (1, ev.EVICT_VRAM, 0),
                    (1, ev.DEMOTE, 0), (1, ev.FILL, 1), (2, ev.CPU_RAM, 0), (2, ev.EVICT_VRAM, 1),
                    (2, ev.DEMOTE, 1), (2, ev.FILL, 0)]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prefetch_that_cannot_enter_vram_reads_ahead_into_ram(make_trace, engine):
    # Global VRAM 1 (held by the pinned step), RAM 4, inclusive. s0: 0 from NVMe (0-2, PCIe 2-3 ms); the
    # prefetch of object 5 cannot evict the pinned 0, so it is only read into RAM (NVMe 2-4 ms). s1: 5 comes
    # from RAM, but not before its read ends: PCIe 4-5 ms. 5 ms for the token; NVMe bytes 2 MB.
    path = make_trace([(0, 0, [0], [1]), (0, 1, [1], [-1])], num_layers=2, lookahead=True)
    result, seen = run(path, "lru", engine, vram_experts=1, ram_experts=4, prefetch="lookahead")
    assert seen == [(0, ev.LOAD_NVME, 0), (0, ev.READAHEAD, 5), (1, ev.EVICT_VRAM, 0), (1, ev.LOAD_RAM, 5)]
    assert (result.bytes_nvme_to_ram, result.ram_hits, result.prefetch_issued) == (2_000_000, 1, 0)
    assert result.time_per_token_s == pytest.approx(0.005)


@pytest.fixture(scope="module")
def mixtral_trace(tmp_path_factory):
    from traces.model_specs import load_spec
    from traces.synth import SynthParams, synthesize

    path = tmp_path_factory.mktemp("buffer") / "t.parquet"
    synthesize(load_spec("mixtral-8x7b"), path, SynthParams(requests=1, prompt_tokens=6, decode_tokens=60,
                                                            lookahead_accuracy=0.8, seed=3))
    return path


@pytest.mark.parametrize("options", [dict(vram_experts=3, ram_experts=5, per_layer=True, prefetch="lookahead"),
                                     dict(vram_experts=40, ram_bytes=0),  # the demand loop's driver
                                     dict(vram_experts=40, ram_experts=60, cpu_compute=True)])
def test_kernel_resumes_when_its_event_buffer_fills(mixtral_trace, monkeypatch, options):
    result, whole = run(mixtral_trace, "lru", "reference", **options)
    # the kernel needs room for one step's worst case (4 per object and hint, 2 per cache object, 16) before
    # each step: 600 holds one Mixtral step (256 objects) but a small part of the trace's events
    monkeypatch.setattr(drivers, "EVENT_BUFFER", 600)
    in_parts, seen = run(mixtral_trace, "lru", "fast", **options)
    assert len(whole) > 1500 and seen == whole
    # the accounting adds up each batch on its thread while the kernel fills the other set of event arrays,
    # which the accounting is done with: the sums are the reference's
    assert in_parts == result


LOOKAHEAD_PER_LAYER = dict(vram_experts=3, ram_experts=5, per_layer=True, prefetch="lookahead")


@pytest.mark.parametrize("policy, params, options", [
    ("lfu", {"decay_every": 3}, LOOKAHEAD_PER_LAYER),
    # one cache for all layers: many counts, so each halving merges two or three buckets of counts
    ("lfu", {"decay_every": 160}, dict(vram_experts=100, ram_experts=180)),
    ("watermark", {"gamma": 0.3, "max_iters": 2, "lookahead_weight": 0.9, "eta": 0.2}, LOOKAHEAD_PER_LAYER),
    # a slow EWMA and no discount leave the experts just chosen (pinned one at a time) among the lightest
    ("watermark", {"alpha": 0.02, "gamma": 0.0}, dict(vram_experts=20, ram_experts=40, sequential=True)),
    # discounts that underflow to 0: every other layer's lightest has credit 0, and a layer with no candidate
    # must not tie with them (its NONE weight times 0 is 0)
    ("watermark", {"gamma": 1000.0}, dict(vram_experts=100, ram_experts=180)),
    ("affinity", {"decay": 0.5}, LOOKAHEAD_PER_LAYER)])
def test_kernel_equals_reference_with_non_default_parameters(mixtral_trace, policy, params, options):
    options = dict(options, params=make_params(policy, params))
    fast = run(mixtral_trace, policy, "fast", **options)
    slow = run(mixtral_trace, policy, "reference", **options)
    assert fast[1] == slow[1] and fast[0] == slow[0]


def test_numba_cache_folder_is_named_after_the_sources_inside_a_users_folder(tmp_path):
    # A user's NUMBA_CACHE_DIR holds the folder named after the simulator's sources, so that an edited policy
    # never reuses a kernel compiled with the old one; a worker process, which inherits the folder itself,
    # keeps it.
    def folder(value):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(value))
        code = "import numba, simulator.jit; print(numba.config.CACHE_DIR)"
        return Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                   cwd=Path(__file__).parent.parent).stdout.strip())

    inside = folder(tmp_path)
    assert inside.parent == tmp_path and inside.name.startswith("numba-") and len(inside.name) == len("numba-") + 16
    assert folder(inside) == inside


def test_a_policys_kernel_is_compiled_once_whatever_arrays_the_trace_gives(mixtral_trace, make_trace):
    # Arrow hands a one-chunk column over without a copy, read-only; a column of several chunks, or rows held
    # back from one batch for the next, come concatenated, writable; a trace without logits gets a stand-in.
    # numba compiles a kernel for each kind of array it is given, so the reader makes them all read-only.
    from simulator import kernel as kn

    # nine prefill rows, one step: two row groups of the writer's seven, the first held back to join the second
    small = make_trace([(t, 0, [t % 3], [0.5, 1.0, 2.0, float(t)]) for t in range(9)], logits=True, phase="prefill")
    options = dict(vram_experts=2, ram_experts=3, per_layer=True)
    for path, extra in [(small, {}), (small, dict(routing_bonus=0.5)), (mixtral_trace, {})]:
        run(path, "fifo", "fast", **options, **extra)
    kernels = [sig for sig in kn.replay.overloads if sig[0].instance_class.__name__ == "FIFOState"]
    assert len(kernels) == 1
