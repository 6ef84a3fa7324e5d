"""Sweep capacities: ranges as users write them, resolved per trace, refused when out of order or too small."""

from __future__ import annotations

import pytest

from simulator.sweep import Capacities, check_holds_one_step, parse_capacities
from traces.errors import MoecacheError
from traces.schema import TraceMeta

# 4 layers x 8 experts of 1 MB, top-2: every expert is 32 MB, one token's active experts 8 MB
META = TraceMeta(model="m", architecture="mixtral", num_layers=4, num_experts=8, top_k=2,
                 bytes_per_expert=(1_000_000,))


@pytest.mark.parametrize("text, kind, values", [
    ("1GiB:4GiB:4", "bytes", [2**30, 2 * 2**30, 3 * 2**30, 4 * 2**30]),
    ("512MB,1GB", "bytes", [512e6, 1e9]),
    ("3000000", "bytes", [3e6]),
    ("0.05:0.5:10", "fraction", [0.05 * (i + 1) for i in range(10)]),
    ("1:4:4", "active", [1, 2, 3, 4]),
    ("2:2:1", "active", [2]),
])
def test_ranges_are_evenly_spaced_and_inclusive(text, kind, values):
    assert parse_capacities(text, kind, "--x").values == pytest.approx(values)


def test_each_kind_resolves_to_bytes_of_the_model():
    assert Capacities("fraction", (0.25, 1.0)).bytes_for(META) == [8_000_000, 32_000_000]
    assert Capacities("active", (1, 2.5)).bytes_for(META) == [8_000_000, 20_000_000]
    assert Capacities("bytes", (5e6,)).bytes_for(META) == [5_000_000]


@pytest.mark.parametrize("text, kind, message", [
    ("4GiB:1GiB:4", "bytes", "out of order"),
    ("2,1", "active", "out of order"),
    ("1GiB:2GiB:0", "bytes", "at least one value"),
    ("1:2:x", "active", "not a whole number"),
    ("0.1:1.5:3", "fraction", "outside 0 < f <= 1"),
    ("two", "active", "is not a number"),
    ("-1", "active", "outside the positive numbers"),
    ("0", "active", "outside the positive numbers"),
    ("4 parsecs", "bytes", "expected a size"),
    ("1:2", "active", "expected START:STOP:COUNT"),
])
def test_bad_ranges_are_one_clear_line(text, kind, message):
    with pytest.raises(MoecacheError, match=message):
        parse_capacities(text, kind, "--x")


def test_a_capacity_below_one_step_is_refused_before_any_run():
    # one step needs top-2 experts: 2 MB in one cache, 2 MB in each of 4 layers' caches per layer
    assert check_holds_one_step(Capacities("bytes", (2e6, 4e6)), META, "--vram", per_layer=False) == [2e6, 4e6]
    with pytest.raises(MoecacheError, match=r"--vram 1,999,999 B: .* cannot hold one step's experts"):
        check_holds_one_step(Capacities("bytes", (1_999_999, 4e6)), META, "--vram", per_layer=False)
    with pytest.raises(MoecacheError, match=r"--vram-active 0.5: .*in each of 4 layers"):
        check_holds_one_step(Capacities("active", (0.5, 2)), META, "--vram-active", per_layer=True)
    assert check_holds_one_step(Capacities("active", (1, 2)), META, "--vram-active", per_layer=True) == [8e6, 16e6]


def sample_configs(policies=("lru", "fifo", "lfu")):
    from simulator.hardware import load_hardware
    from simulator.replay import SimConfig

    hw = load_hardware("h100-pcie5")
    return [SimConfig(policy=p, hardware=hw, vram_experts=v, ram_experts=64) for p in policies for v in (8, 16)]


def test_the_pool_gives_the_results_of_runs_in_process():
    from simulator.sweep_run import RUN_KEY, execute, make_runs
    from traces.data_files import data_dir

    runs = make_runs(data_dir("samples", "mixtral-synth.parquet"), sample_configs())
    alone, pooled = [], []
    execute(runs, 1, alone.append)
    execute(runs, 2, pooled.append)
    assert len({r[RUN_KEY] for r in alone}) == len(runs) == 6
    assert sorted(alone, key=lambda r: r[RUN_KEY]) == sorted(pooled, key=lambda r: r[RUN_KEY])
    assert len({(r["policy"], r["vram_bytes"], r["vram_misses"]) for r in alone}) == 6


def test_an_error_in_one_run_stops_the_sweep_and_keeps_the_results_so_far(tmp_path):
    import dataclasses

    from simulator.sweep_run import execute, make_runs
    from traces.data_files import data_dir

    good = sample_configs(("lru",))
    bad = dataclasses.replace(good[0], vram_experts=1, ram_experts=1)  # cannot hold a step's two experts
    runs = make_runs(data_dir("samples", "mixtral-synth.parquet"), [*good, bad])
    for workers in (1, 2):
        kept = []
        with pytest.raises(MoecacheError, match="one step"):
            execute(runs, workers, kept.append)
        assert len(kept) <= 2 and all(r["policy"] == "lru" for r in kept)


def test_run_keys_follow_the_configuration_and_the_trace_file(tmp_path):
    import dataclasses
    import os
    import shutil

    from simulator.sweep_run import run_key
    from traces.data_files import data_dir

    trace = tmp_path / "t.parquet"
    shutil.copy(data_dir("samples", "mixtral-synth.parquet"), trace)
    config = sample_configs(("lru",))[0]
    key = run_key(trace, config)
    assert run_key(trace, dataclasses.replace(config)) == key
    assert run_key(trace, dataclasses.replace(config, vram_experts=9)) != key
    assert run_key(trace, dataclasses.replace(config, prefetch="transitions")) != key
    os.utime(trace, ns=(1, 1))
    assert run_key(trace, config) != key
