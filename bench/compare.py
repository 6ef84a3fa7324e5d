"""`moecache compare` as a user runs it: a 3-trace x 6-policy x 10-capacity sweep, on every core and on one.

Synthesises three Qwen3-30B-A3B-shaped traces of about 1 million layer steps each (different seeds),
then times whole `moecache compare` processes (start-up, checks, every run, results written) over
LRU, FIFO, LFU, Belady, S3-FIFO and ARC at 10 VRAM capacities from 5% to 50% of the experts, plus
the Belady-with-bypass bound: first with the default workers (one per core), then `--workers 1`.
The numba cache is warmed first by a small sweep, as a user's second sweep finds it.
Target (issue 10): under 5 minutes on the 2-core development machine.
Run: .venv/bin/python bench/compare.py [--steps 1000000] [--dir build/bench-compare]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

POLICIES = ("lru", "fifo", "lfu", "belady", "s3fifo", "arc")
LAYERS, PROMPT, DECODE = 48, 1, 203  # Qwen3-30B-A3B: one decode row per layer step


def moecache(*args: object) -> float:
    start = time.perf_counter()
    subprocess.run([Path(sys.executable).parent / "moecache", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="layer steps per trace")
    parser.add_argument("--dir", type=Path, default=Path("build/bench-compare"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    requests = max(1, round(args.steps / (LAYERS * (PROMPT + DECODE))))
    traces = []
    for seed in (1, 2, 3):
        path = args.dir / f"qwen3-{requests}-{seed}.parquet"
        if not path.exists():
            moecache("traces", "synth", "--like", "qwen3-30b-a3b", "--requests", requests, "--prompt-tokens", PROMPT,
                     "--decode-tokens", DECODE, "--seed", seed, "-o", path, "--quiet")
        traces.append(path)
    policies = [a for p in POLICIES for a in ("-p", p)]
    sweep = ["--vram-fraction", "0.05:0.5:10", "--quiet"]
    moecache("compare", traces[0], *policies, "--vram-fraction", "0.05,0.1", "-o", args.dir / "warm", "--quiet")
    runs = pq.read_metadata(args.dir / "warm" / "results.parquet").num_rows * 5 * 3
    rows = sum(pq.read_metadata(t).num_rows for t in traces)
    cores = len(os.sched_getaffinity(0))
    print(f"3 traces of {rows // 3:,} layer steps, {len(POLICIES)} policies + bound x 10 capacities = {runs} runs; "
          f"{cores} cores")
    for label, extra in ((f"--workers {cores} (default)", []), ("--workers 1", ["--workers", "1"])):
        seconds = moecache("compare", *traces, *policies, *sweep, "-o", args.dir / "cmp", *extra)
        print(f"{label:<22}{seconds:8.1f} s   {runs / seconds:6.2f} runs/s")


if __name__ == "__main__":
    main()
