"""The general kernel: accesses per second of every policy in every mode, against the demand loop and libCacheSim.

One Qwen3-30B-A3B-shaped synthetic trace (default 10 million expert accesses, with router logits and a
lookahead column) replayed in process by `simulate` (reading, steps, replay and accounting included; numba
compiled beforehand) for every policy of the registry in each mode below. Ratios: to the demand loop's LRU
(`simulator.demand_kernel`, the fastest path, same trace) and, in the demand mode, to libCacheSim's own
policy in process on the same request stream (its binary trace written beforehand, not timed). Then whole
processes, `moecache simulate` as a user runs it, in the demand and two-tier per-layer modes (`--whole-modes
all`: every mode), with each process's own peak RSS and the ratio to the demand loop's LRU as a process.
Every figure is the best of `--repeat` runs (default 3): on a shared machine a single run can be several
times slower than the next. Targets (issue 9): >= 5 M accesses/s in every mode, within about 2x of the
demand loop.
Run: .venv/bin/python bench/kernel.py [--requests 128] [--trace PATH] [--policies lru,arc] [--modes ...]
     [--repeat 3] [--whole-modes all]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from simulator.future import access_stream, next_uses
from simulator.hardware import load_hardware
from simulator.policies import REGISTRY, make_params
from simulator.replay import SimConfig, simulate
from traces.model_specs import load_spec
from traces.reader import open_trace
from traces.synth import SynthParams, synthesize

HW = load_hardware("h100-pcie5")
TWO_TIERS = dict(per_layer=True, vram_experts=32, ram_experts=64)
TWO_TIER_FLAGS = ["--per-layer", "--vram-experts", "32", "--ram-experts", "64"]
GLOBAL_TIERS = dict(vram_experts=1536, ram_experts=3072)
GLOBAL_TIER_FLAGS = ["--global", "--vram-experts", "1536", "--ram-experts", "3072"]
MODES = {  # name: (SimConfig options, the same as simulate flags)
    "demand": (dict(vram_experts=3072, ram_bytes=0), ["--global", "--vram-experts", "3072", "--ram", "0"]),
    "two-tier per-layer": (TWO_TIERS, TWO_TIER_FLAGS),
    "two-tier global": (GLOBAL_TIERS, GLOBAL_TIER_FLAGS),
    "exclusive": (dict(TWO_TIERS, inclusive=False), [*TWO_TIER_FLAGS, "--exclusive"]),
    "cpu-compute": (dict(TWO_TIERS, cpu_compute=True), [*TWO_TIER_FLAGS, "--cpu-compute"]),
    "prefetch lookahead": (dict(TWO_TIERS, prefetch="lookahead"), [*TWO_TIER_FLAGS, "--prefetch", "lookahead"]),
    "prefetch transitions": (dict(TWO_TIERS, prefetch="transitions"), [*TWO_TIER_FLAGS, "--prefetch", "transitions"]),
    "prefetch affinity": (dict(TWO_TIERS, prefetch="affinity"), [*TWO_TIER_FLAGS, "--prefetch", "affinity"]),
    "routing bonus": (dict(TWO_TIERS, routing_bonus=0.5), [*TWO_TIER_FLAGS, "--routing-bonus", "0.5"]),
    "global lookahead": (dict(GLOBAL_TIERS, prefetch="lookahead"), [*GLOBAL_TIER_FLAGS, "--prefetch", "lookahead"]),
}
WHOLE_MODES = "demand,two-tier per-layer"  # whole processes by default; --whole-modes all for every mode
LIBCACHESIM = {"lru": "LRU", "fifo": "FIFO", "lfu": "LFU", "belady": "Belady", "s3fifo": "S3FIFO", "arc": "ARC"}


def timed(path: Path, config: SimConfig, repeat: int) -> tuple[float, object]:
    """(the least seconds of `repeat` runs, the result)."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = simulate(path, config)
        best = min(best, time.perf_counter() - start)
    return best, result


def libcachesim_rate(objects: np.ndarray, policy: str, capacity: int, folder: Path) -> tuple[float, int]:
    """(accesses/s, misses) of libCacheSim's policy in process on the same request stream."""
    import libcachesim as lcs

    oracle = folder / "requests.oracleGeneral"
    if not oracle.exists():
        following, _ = next_uses(objects, int(objects.max()) + 1)
        rows = np.zeros(len(objects), np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
        rows["t"], rows["id"], rows["size"] = np.arange(len(objects)), objects.astype(np.uint64) + 1, 1
        rows["next"] = np.where(following >= len(objects), -1, following)
        rows.tofile(oracle)
    cache = getattr(lcs, LIBCACHESIM[policy])(capacity)
    start = time.perf_counter()
    miss_ratio, _ = cache.process_trace(lcs.TraceReader(str(oracle), lcs.TraceType.ORACLE_GENERAL_TRACE))
    return len(objects) / (time.perf_counter() - start), round(miss_ratio * len(objects))


def whole_process(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of one command. The peak is the child's own VmHWM, polled from
    /proc: its rusage would report this (large) process's peak, which Linux carries over exec."""
    start = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL)
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                peak = max([peak] + [int(line.split()[1]) for line in status.read_text().splitlines()
                                     if line.startswith("VmHWM:")])
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed")
    return seconds, peak / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=128, help="requests of 204 tokens x 48 layers x 8 experts")
    parser.add_argument("--trace", type=Path, help="use this trace instead of synthesising one")
    parser.add_argument("--policies", default=",".join(REGISTRY))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is printed")
    parser.add_argument("--whole-modes", default=WHOLE_MODES, help="modes timed as whole processes too, or all")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    policies, modes = args.policies.split(","), args.modes.split(",")
    whole_modes = list(MODES) if args.whole_modes == "all" else args.whole_modes.split(",")
    if unknown := set(modes + whole_modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    with tempfile.TemporaryDirectory(prefix="moecache-bench-") as tmp:
        folder = Path(tmp)
        path = args.trace
        if path is None:
            path = folder / "qwen3.parquet"
            synthesize(load_spec("qwen3-30b-a3b"), path, SynthParams(requests=args.requests, prompt_tokens=1,
                                                                     decode_tokens=203, logits=True,
                                                                     lookahead_accuracy=0.8))
        trace = open_trace(path)
        objects = access_stream(trace)
        accesses = len(objects)
        print(f"trace: {trace.meta.model}-shaped, {trace.num_rows:,} rows, {accesses:,} expert accesses\n")
        warm = folder / "warm.parquet"  # a small trace of the same shape: compile (or load) every path first
        synthesize(load_spec("qwen3-30b-a3b"), warm, SynthParams(requests=2, prompt_tokens=1, decode_tokens=15,
                                                                 logits=True, lookahead_accuracy=0.8))
        for options, _ in MODES.values():
            for policy in policies:
                if not (policy == "belady" and "routing_bonus" in options):
                    simulate(warm, SimConfig(policy=policy, hardware=HW, engine="kernel", **options))
        simulate(warm, SimConfig(policy="lru", hardware=HW, **MODES["demand"][0]))
        seconds, _ = timed(path, SimConfig(policy="lru", hardware=HW, **MODES["demand"][0]), args.repeat)
        loop_rate = accesses / seconds
        print(f"demand loop (simulator.demand_kernel), LRU, in process: {loop_rate / 1e6:.2f} M accesses/s\n")
        print(f"{'mode':22} {'policy':10} {'M acc/s':>8} {'/loop':>6} {'libCacheSim M/s':>16} {'ours/lcs':>9}")
        for mode in modes:
            options = MODES[mode][0]
            for policy in [*policies, "bound"]:  # bound: Belady with bypass, simulate's bound column
                if policy in ("belady", "bound") and "routing_bonus" in options:
                    continue
                params = make_params("belady", {"bypass": 1}) if policy == "bound" else None
                seconds, result = timed(path, SimConfig(policy="belady" if params else policy, params=params,
                                                        hardware=HW, engine="kernel", **options), args.repeat)
                rate = accesses / seconds
                theirs = ""
                if mode == "demand" and policy in LIBCACHESIM:
                    lcs_rate, misses = libcachesim_rate(objects, policy, options["vram_experts"], folder)
                    same = "" if misses == result.vram_misses else " (misses differ)"
                    theirs = f"{lcs_rate / 1e6:16.2f} {rate / lcs_rate:8.2f}x{same}"
                print(f"{mode:22} {policy:10} {rate / 1e6:8.2f} {rate / loop_rate:5.2f}x {theirs}", flush=True)
        moecache = Path(sys.executable).with_name("moecache")

        def process(policy: str, mode: str) -> tuple[float, float]:
            """(least seconds, greatest peak RSS in MiB) of `repeat` whole `moecache simulate` processes."""
            runs = [whole_process([str(moecache), "simulate", str(path), "-p", policy, *MODES[mode][1], "--no-bound",
                                   "--json"]) for _ in range(args.repeat)]
            assert json.loads(runs[0][2])["runs"][0]["accesses"] == accesses
            return min(run[0] for run in runs), max(run[1] for run in runs)

        loop_seconds, _ = process("lru", "demand")
        print("\nwhole processes, `moecache simulate` (start-up, imports, reading, replay, accounting); /loop against "
              f"the demand loop's LRU as a whole process ({loop_seconds:.2f} s):")
        print(f"{'mode':22} {'policy':10} {'seconds':>8} {'M acc/s':>8} {'/loop':>6} {'peak RSS MiB':>13}")
        for mode in whole_modes:
            for policy in policies:
                if policy == "belady" and "routing_bonus" in MODES[mode][0]:
                    continue
                seconds, rss = process(policy, mode)
                print(f"{mode:22} {policy:10} {seconds:8.2f} {accesses / seconds / 1e6:8.2f} "
                      f"{loop_seconds / seconds:5.2f}x {rss:13.0f}", flush=True)
        print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
