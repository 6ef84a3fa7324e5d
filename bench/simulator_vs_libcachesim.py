"""The simulator against libCacheSim on a 10-million-step trace shaped like Qwen3-30B-A3B.

Plain demand caching (`--global --ram 0`, one request per expert, libCacheSim's semantics), where
both must give the same misses (checked here too). Prints, for LRU, LFU and Belady at one capacity:
requests per second of `moecache simulate` (from the Parquet trace, everything included) and of
libCacheSim's `process_trace` (from its own binary trace, written beforehand and not timed), as a
ratio. Then the time of a 32-point miss-ratio curve from one pass against 32 libCacheSim runs: LRU
from its stack distances (every capacity), Belady from its priority stack cut at the 32 capacities. Peak memory is measured before libCacheSim runs.
First, whole processes as users run them: `moecache simulate` as a command against a process that reads the
same Parquet trace with pyarrow, builds the request stream (and Belady's next uses) with numpy, and runs libCacheSim
(LRU, FIFO, LFU, Belady; everything from start-up to the miss count is timed).
Targets: >= 1.0x libCacheSim at one capacity (in process and whole process), >= 10x for the curve, peak
memory < 2 GB.
Run: .venv/bin/python bench/simulator_vs_libcachesim.py [--steps N] [--capacity-share 0.5] [--whole-process-only]
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

from simulator.future import NEVER, access_stream, next_uses
from simulator.hardware import load_hardware
from simulator.mrc import belady_points, lru_curve
from simulator.replay import SimConfig, simulate
from traces.model_specs import load_spec
from traces.reader import open_trace
from traces.synth import SynthParams, synthesize

POLICIES = ("lru", "lfu", "belady")
WHOLE_POLICIES = ("lru", "fifo", "lfu", "belady")
LIBCACHESIM_PROCESS = """
import json, sys, time
import numpy as np, pyarrow.parquet as pq, libcachesim as lcs
path, policy, capacity, oracle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
table = pq.read_table(path, columns=["layer", "experts"])
experts = int(json.loads(table.schema.metadata[b"moecache.num_experts"]))
top_k = int(json.loads(table.schema.metadata[b"moecache.top_k"]))
chosen = table.column("experts").combine_chunks().flatten().to_numpy().reshape(-1, top_k).astype(np.int64)
objects = (table.column("layer").to_numpy().astype(np.int64)[:, None] * experts + chosen).ravel()
following = np.full(len(objects), -1, np.int64)
if policy == "belady":  # only Belady reads the next uses
    order = np.lexsort((np.arange(len(objects)), objects))  # by object, then time: next use is the next entry
    same = objects[order[1:]] == objects[order[:-1]]
    following[order[:-1][same]] = order[1:][same]
rows = np.zeros(len(objects), np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
rows["t"], rows["id"], rows["size"], rows["next"] = np.arange(len(objects)), objects + 1, 1, following
rows.tofile(oracle)
cls = {"lru": lcs.LRU, "fifo": lcs.FIFO, "lfu": lcs.LFU, "belady": lcs.Belady}[policy]
miss_ratio, _ = cls(capacity).process_trace(lcs.TraceReader(oracle, lcs.TraceType.ORACLE_GENERAL_TRACE))
print(round(miss_ratio * len(objects)))
"""


def whole_process(args: list[str]) -> tuple[float, str]:
    """Seconds of a whole process, as a user runs it, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def whole_processes(trace_path: Path, capacity: int, folder: Path) -> None:
    """`moecache simulate` as a command against a process that reads the Parquet trace with pyarrow, builds
    the request stream (and, for Belady, the next uses) with numpy and replays it with libCacheSim."""
    moecache = Path(sys.executable).with_name("moecache")
    print("\nwhole processes, from the Parquet trace to the miss count (start-up, imports, reading included):")
    print(f"{'policy':8} {'moecache simulate s':>20} {'pyarrow + libCacheSim s':>24} {'ratio':>7}  misses")
    for policy in WHOLE_POLICIES:
        ours, out = whole_process([str(moecache), "simulate", str(trace_path), "-p", policy, "--global", "--ram", "0",
                                   "--vram-experts", str(capacity), "--no-bound", "--json"])
        misses = json.loads(out)["runs"][0]["vram_misses"]
        theirs, out = whole_process([sys.executable, "-c", LIBCACHESIM_PROCESS, str(trace_path), policy,
                                     str(capacity), str(folder / "whole.oracleGeneral")])
        same = "equal" if int(out) == misses else f"DIFFER {int(out):,}"
        print(f"{policy:8} {ours:20.2f} {theirs:24.2f} {theirs / ours:6.2f}x  {misses:,} ({same})")
RECORD = np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_oracle(objects: np.ndarray, following: np.ndarray, path: Path) -> None:
    """libCacheSim's oracleGeneral binary trace (timestamp, id, size, next access), in chunks."""
    with path.open("wb") as f:
        for start in range(0, len(objects), 1 << 22):
            stop = min(start + (1 << 22), len(objects))
            rows = np.zeros(stop - start, RECORD)
            rows["t"] = np.arange(start, stop)
            rows["id"] = objects[start:stop].astype(np.uint64) + 1
            rows["size"] = 1
            nxt = following[start:stop]
            rows["next"] = np.where(nxt >= NEVER, -1, nxt)
            rows.tofile(f)


def libcachesim_run(lcs, policy: str, capacity: int, path: Path) -> tuple[float, float]:
    cls = {"lru": lcs.LRU, "lfu": lcs.LFU, "belady": lcs.Belady}[policy]
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    start = time.perf_counter()
    miss_ratio, _ = cls(capacity).process_trace(reader)
    return time.perf_counter() - start, miss_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--capacity-share", type=float, default=0.5, help="capacity as a share of all experts")
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--whole-process-only", action="store_true", help="only the whole-process comparison")
    args = parser.parse_args()
    import libcachesim as lcs

    spec = load_spec("qwen3-30b-a3b")
    tokens = 260
    requests = -(-args.steps // (tokens * spec.num_layers))
    hw = load_hardware("h100-pcie5")
    n = spec.num_layers * spec.num_experts
    capacity = int(n * args.capacity_share)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trace_path = folder / "qwen3.parquet"
        synthesize(spec, folder / "warm.parquet", SynthParams(requests=1, prompt_tokens=0, decode_tokens=8))
        made = synthesize(spec, trace_path, SynthParams(requests=requests, prompt_tokens=0, decode_tokens=tokens))
        print(f"trace: {made.rows:,} decode steps shaped like {spec.name} ({spec.num_layers} layers x "
              f"{spec.num_experts} experts, top-{spec.top_k}); capacity {capacity:,} of {n:,} experts")
        simulate(folder / "warm.parquet", SimConfig(policy="lru", hardware=hw, vram_experts=capacity, ram_bytes=0))
        whole_processes(trace_path, capacity, folder)
        if args.whole_process_only:
            return
        ours = {}
        for policy in POLICIES:
            config = SimConfig(policy=policy, hardware=hw, vram_experts=capacity, ram_bytes=0)
            start = time.perf_counter()
            result = simulate(trace_path, config)
            ours[policy] = (time.perf_counter() - start, result)
        trace = open_trace(trace_path)
        start = time.perf_counter()
        objects = access_stream(trace)
        following, _ = next_uses(objects, n)
        prepare = time.perf_counter() - start
        points = np.unique(np.linspace(1, n, args.points).round().astype(int))
        start = time.perf_counter()
        lru = lru_curve(objects, n)
        lru_s = time.perf_counter() - start
        start = time.perf_counter()
        belady = belady_points(objects, following, n, points)
        belady_s = time.perf_counter() - start
        our_peak = peak_mib()
        oracle = folder / "requests.oracleGeneral"
        write_oracle(objects, following, oracle)
        accesses = len(objects)
        del objects, following

        print(f"\nrequests (expert accesses): {accesses:,}")
        print(f"{'policy':8} {'moecache s':>11} {'req/s':>13} {'libCacheSim s':>14} {'req/s':>13} {'ratio':>7}  misses")
        for policy in POLICIES:
            seconds, result = ours[policy]
            theirs, ratio = libcachesim_run(lcs, policy, capacity, oracle)
            same = "equal" if round(ratio * accesses) == result.vram_misses else f"DIFFER {round(ratio * accesses):,}"
            print(f"{policy:8} {seconds:11.2f} {accesses / seconds:13,.0f} {theirs:14.2f} {accesses / theirs:13,.0f} "
                  f"{theirs / seconds:6.2f}x  {result.vram_misses:,} ({same})")

        print(f"\n{len(points)}-point miss-ratio curve (one pass; access stream + next uses took {prepare:.2f} s, "
              "included below)")
        lru_points = np.array([lru.at(int(c)) for c in points])
        for name, curve, seconds in (("lru", lru_points, lru_s), ("belady", belady, belady_s)):
            runs = 0.0
            for capacity_point, ours_misses in zip(points, curve):
                theirs, ratio = libcachesim_run(lcs, name, int(capacity_point), oracle)
                runs += theirs
                assert round(ratio * accesses) == ours_misses, (name, capacity_point)
            total = seconds + prepare
            print(f"{name:8} one pass {total:8.2f} s   {len(points)} libCacheSim runs {runs:8.2f} s   "
                  f"{runs / total:6.1f}x  (all {len(points)} points equal)")
    print(f"\npeak RSS of moecache's part: {our_peak:,.0f} MiB")


if __name__ == "__main__":
    main()
