"""The numba kernel against the plain reference (event for event), and both against libCacheSim and
brute force; the one-pass miss-ratio curves against per-capacity runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from simulator.config import resolve
from simulator.drivers import DemandDriver
from simulator.future import access_stream, next_uses
from simulator.hardware import expert_sizes, load_hardware
from simulator.mrc import belady_curve, belady_points, lru_curve
from simulator.policies import REGISTRY, make_params
from simulator.replay import SimConfig, simulate
from traces import reader
from traces.model_specs import load_spec
from traces.reader import open_trace
from traces.synth import SynthParams, synthesize

HW = load_hardware("desktop-24gb-pcie4")
MIXTRAL = load_spec("mixtral-8x7b")
CONFIGS = {
    "per-layer two tiers": dict(vram_experts=3, ram_experts=5, per_layer=True),
    "per-layer sequential": dict(vram_experts=2, ram_experts=3, per_layer=True, sequential=True),
    "global demand": dict(vram_experts=70, ram_bytes=0),
    "global pinned exclusive": dict(vram_experts=80, ram_experts=100, inclusive=False),
    "cpu-compute": dict(vram_experts=60, ram_experts=120, cpu_compute=True),
    "prefetch transitions": dict(vram_experts=4, ram_experts=6, per_layer=True, prefetch="transitions"),
    "prefetch lookahead": dict(vram_experts=96, ram_experts=160, prefetch="lookahead", prefetch_limit=3),
    "prefetch affinity, sequential": dict(vram_experts=90, ram_experts=150, prefetch="affinity", sequential=True),
    "routing bonus": dict(vram_experts=3, ram_experts=5, per_layer=True, routing_bonus=0.5),
}


@pytest.fixture(scope="module")
def synth_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "mixtral.parquet"
    synthesize(MIXTRAL, path, SynthParams(requests=2, prompt_tokens=12, decode_tokens=40, lookahead_accuracy=0.7,
                                          logits=True, seed=5))
    return path


def replay_events(path, engine, policy, **options):
    seen = []
    result = simulate(path, SimConfig(policy=policy, hardware=HW, engine=engine, **options),
                      on_events=lambda *arrays: seen.append(np.stack([a.astype(np.int64) for a in arrays])))
    return result, np.concatenate(seen, axis=1) if seen else np.zeros((3, 0), np.int64)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("policy", list(REGISTRY))
def test_kernel_equals_reference_event_for_event(synth_trace, policy, config):
    options = CONFIGS[config]
    if policy == "belady" and "routing_bonus" in options:
        pytest.skip("Belady reads the recorded future, which re-routing changes (refused by design)")
    fast, fast_events = replay_events(synth_trace, "fast", policy, **options)
    slow, slow_events = replay_events(synth_trace, "reference", policy, **options)
    assert fast_events.shape[1] > 0
    np.testing.assert_array_equal(fast_events, slow_events)
    assert fast.to_dict() == slow.to_dict()


@pytest.mark.parametrize("config", ["per-layer two tiers", "routing bonus"])
def test_replay_does_not_depend_on_the_reading_batch(synth_trace, monkeypatch, config):
    """Steps cut across batches of rows (prefill chunks; batches of 7 rows here) replay as when read whole."""
    whole, whole_events = replay_events(synth_trace, "fast", "lfu", **CONFIGS[config])
    monkeypatch.setattr(reader, "BATCH_ROWS", 7)
    cut, cut_events = replay_events(synth_trace, "fast", "lfu", **CONFIGS[config])
    np.testing.assert_array_equal(cut_events, whole_events)
    assert cut.to_dict() == whole.to_dict()


@pytest.mark.parametrize("policy", list(REGISTRY))
def test_kernel_equals_reference_on_real_log(shared_log, tmp_path, run_cli, policy):
    path = tmp_path / "gsm8k.parquet"
    assert run_cli("traces", "import", shared_log("mixtral-8x7b-gsm8k.jsonl"), "-m", "mixtral-8x7b", "-o", path)[0] == 0
    options = dict(vram_experts=4, ram_experts=6, per_layer=True)
    _, fast_events = replay_events(path, "fast", policy, **options)
    _, slow_events = replay_events(path, "reference", policy, **options)
    np.testing.assert_array_equal(fast_events, slow_events)


def plain_next_uses(objects) -> list[int]:
    """Each request's next request of the same object (-1: none), by a plain backward loop."""
    following, last = [], {}
    for i in range(len(objects) - 1, -1, -1):
        following.append(last.get(int(objects[i]), -1))
        last[int(objects[i])] = i
    return following[::-1]


def raw_request_stream(path) -> np.ndarray:
    """The demand-caching request stream of a trace, built here from its raw Parquet rows (every row group):
    consecutive prefill rows of one request and layer are one step, whose requests are their experts in
    order of first appearance; every decode row is a step; an object is layer * num_experts + expert."""
    table = pq.read_table(path)
    experts_per_layer = int(json.loads(table.schema.metadata[b"moecache.num_experts"]))
    out, step, key = [], [], None
    columns = [table.column(name).to_pylist() for name in ("request", "phase", "layer", "experts")]
    for request, phase, layer, experts in zip(*columns):
        this = (request, layer) if phase == "prefill" else None
        if this is None or this != key:
            out += step
            step = []
        key = this
        for expert in experts:
            obj = layer * experts_per_layer + expert
            if obj not in step:
                step.append(obj)
    return np.array(out + step, np.int64)


def split_row_groups(path, tmp_path, rows=37) -> Path:
    """The same trace in row groups of `rows` rows, so that prefill steps are cut across row groups."""
    table = pq.read_table(path)
    out = tmp_path / f"split-{path.stem}.parquet"
    pq.write_table(table, out, row_group_size=rows)
    assert pq.ParquetFile(out).metadata.num_row_groups > 2
    return out


def libcachesim_misses(objects: np.ndarray, policy: str, capacity: int, tmp_path) -> int:
    """Misses of libCacheSim's own policy on the same request stream (oracleGeneral binary trace)."""
    lcs = pytest.importorskip("libcachesim")
    record = np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    rows = np.zeros(len(objects), record)
    rows["t"], rows["id"], rows["size"] = np.arange(len(objects)), objects.astype(np.uint64) + 1, 1
    rows["next"] = plain_next_uses(objects)
    path = tmp_path / "requests.oracleGeneral"
    rows.tofile(path)
    cls = {"lru": lcs.LRU, "fifo": lcs.FIFO, "lfu": lcs.LFU, "belady": lcs.Belady, "s3fifo": lcs.S3FIFO,
           "arc": lcs.ARC}[policy]
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    miss_ratio, _ = cls(capacity).process_trace(reader)
    return round(miss_ratio * len(objects))


def check_against_libcachesim(path, tmp_path, capacities):
    path = split_row_groups(path, tmp_path)
    objects = raw_request_stream(path)
    for policy in ("lru", "fifo", "lfu", "belady", "s3fifo", "arc"):
        for capacity in capacities:
            if policy == "s3fifo" and capacity < 20:
                continue  # libCacheSim caches nothing while its small queue holds fewer than 2 (see policies.s3fifo)
            ours = simulate(path, SimConfig(policy=policy, hardware=HW, vram_experts=capacity, ram_bytes=0))
            assert ours.mode == "sequential demand caching" and ours.accesses == len(objects)
            assert (policy, capacity, ours.vram_misses) == (policy, capacity,
                                                            libcachesim_misses(objects, policy, capacity, tmp_path))


def test_demand_caching_equals_libcachesim_on_synthetic(synth_trace, tmp_path):
    check_against_libcachesim(synth_trace, tmp_path, (2, 16, 20, 29, 64, 128, 200))


@pytest.mark.parametrize("policy", ["s3fifo", "arc"])
def test_new_policies_equal_libcachesim_on_random_streams(tmp_path, make_trace, policy):
    """S3-FIFO and ARC, written from their papers and libCacheSim's behaviour, on skewed and uniform streams
    (cache sizes from 20 to 150 objects), each request a decode step of one expert."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        objects = (rng.zipf(1.3, 3000) if trial % 2 else rng.integers(0, 400, 3000)) % 256
        path = make_trace([(token, 0, [int(x)]) for token, x in enumerate(objects)], num_experts=256)
        for capacity in (20, 37, 150):
            ours = simulate(path, SimConfig(policy=policy, hardware=HW, vram_experts=capacity, ram_bytes=0))
            assert (trial, capacity, ours.vram_misses) == (trial, capacity,
                                                           libcachesim_misses(objects, policy, capacity, tmp_path))


@pytest.mark.parametrize("log", ["mixtral-8x7b-gsm8k.jsonl", "mixtral-8x7b-humaneval-p0.jsonl"])
def test_demand_caching_equals_libcachesim_on_real_logs(shared_log, tmp_path, run_cli, log):
    path = tmp_path / "real.parquet"
    assert run_cli("traces", "import", shared_log(log), "-m", "mixtral-8x7b", "-o", path)[0] == 0
    check_against_libcachesim(path, tmp_path, (8, 64, 128, 192))


def test_one_pass_curves_equal_per_capacity_runs(synth_trace, tmp_path):
    objects = access_stream(open_trace(synth_trace))
    n = MIXTRAL.num_layers * MIXTRAL.num_experts
    following, _ = next_uses(objects, n)
    lru, belady = lru_curve(objects, n), belady_curve(objects, following, n)
    for capacity in (2, 5, 33, 100, 180, 256):
        for curve in (lru, belady):
            run = simulate(synth_trace, SimConfig(policy=curve.policy, hardware=HW, vram_experts=capacity,
                                                  ram_bytes=0))
            assert (curve.policy, capacity, curve.at(capacity)) == (curve.policy, capacity, run.vram_misses)
    assert lru.compulsory == belady.compulsory == len(np.unique(objects))
    assert (belady.misses <= lru.misses).all() and (np.diff(lru.misses) <= 0).all()


def test_one_pass_curves_equal_libcachesim_on_random_streams(tmp_path):
    rng = np.random.default_rng(7)
    objects = (rng.zipf(1.2, 20_000) % 300).astype(np.int32)
    following, _ = next_uses(objects, 300)
    lru, belady = lru_curve(objects, 300), belady_curve(objects, following, 300)
    for capacity in (1, 3, 10, 50, 150, 299):
        assert lru.at(capacity) == libcachesim_misses(objects, "lru", capacity, tmp_path)
        assert belady.at(capacity) == libcachesim_misses(objects, "belady", capacity, tmp_path)


def test_belady_with_bypass_kernel_equals_reference(synth_trace):
    params = make_params("belady", {"bypass": 1})
    for options in (CONFIGS["global demand"], CONFIGS["per-layer two tiers"]):
        fast, fast_events = replay_events(synth_trace, "fast", "belady", params=params, **options)
        slow, slow_events = replay_events(synth_trace, "reference", "belady", params=params, **options)
        np.testing.assert_array_equal(fast_events, slow_events)
        plain, _ = replay_events(synth_trace, "fast", "belady", **options)
        assert fast.vram_misses <= plain.vram_misses


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "belady"])
def test_general_kernel_equals_the_demand_loop(synth_trace, policy):
    """The two fast paths of plain demand caching agree event for event (the bench compares their speed)."""
    loop, loop_events = replay_events(synth_trace, "fast", policy, **CONFIGS["global demand"])
    kernel, kernel_events = replay_events(synth_trace, "kernel", policy, **CONFIGS["global demand"])
    np.testing.assert_array_equal(loop_events, kernel_events)
    assert loop.to_dict() == kernel.to_dict()


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "belady"])
def test_demand_caching_takes_the_tight_loop(synth_trace, policy):
    """So the event-for-event test's "global demand" case checks simulator.demand_kernel."""
    trace = open_trace(synth_trace)
    sizes = expert_sizes(trace.meta)

    def takes(options):
        config = SimConfig(policy=policy, hardware=HW, **options)
        return DemandDriver.handles(config, make_params(policy), resolve(config, trace, sizes))

    assert takes(CONFIGS["global demand"]) and not takes(CONFIGS["per-layer two tiers"])


def test_belady_at_chosen_capacities_equals_the_full_curve_and_libcachesim(tmp_path):
    rng = np.random.default_rng(11)
    objects = (rng.zipf(1.1, 30_000) % 400).astype(np.int32)
    following, _ = next_uses(objects, 400)
    capacities = np.array([1, 2, 7, 40, 111, 250, 399, 400])
    points = belady_points(objects, following, 400, capacities)
    full = belady_curve(objects, following, 400)
    assert points.tolist() == [full.at(c) for c in capacities]
    for capacity, misses in zip(capacities[:5], points[:5]):
        assert misses == libcachesim_misses(objects, "belady", int(capacity), tmp_path)
