"""Fit `traces synth` defaults to the real Mixtral-8x7B logs and print both side by side.

Imports the two logs of ../shared/traces, averages their statistics, then grid-searches skew,
locality and cross-layer for the synthetic trace (same model, same seed) whose popularity skew,
temporal repeat rate and next-layer predictability are closest. Run: .venv/bin/python bench/fit_synth.py
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

from traces.importers import import_vllm_jsonl
from traces.model_specs import load_spec
from traces.reader import open_trace
from traces.stats import compute_stats
from traces.synth import SynthParams, synthesize

LOGS = Path(__file__).resolve().parents[2] / "shared" / "traces"
TARGETS = ("top_quarter_share", "gini", "repeat_rate", "next_layer_top1")
SHOWN = TARGETS + ("entropy", "repeat_rate_independent", "next_layer_top1_independent")


def main() -> int:
    names = ["mixtral-8x7b-gsm8k.jsonl", "mixtral-8x7b-humaneval-p0.jsonl"]
    if not all((LOGS / n).exists() for n in names):
        print(f"needs the real logs in {LOGS}", file=sys.stderr)
        return 2
    spec = load_spec("mixtral-8x7b")
    with tempfile.TemporaryDirectory() as tmp:
        real = []
        for name in names:
            out = Path(tmp) / f"{name}.parquet"
            import_vllm_jsonl(LOGS / name, spec, out)
            real.append(compute_stats(open_trace(out)))
        target = {k: float(np.mean([getattr(s, k) for s in real])) for k in SHOWN}
        best = None
        grid = itertools.product((0.1, 0.25, 0.4, 0.55), (0.04, 0.08, 0.12, 0.16), (0.15, 0.25, 0.35, 0.45))
        for skew, locality, cross in grid:
            out = Path(tmp) / "synth.parquet"
            synthesize(spec, out, SynthParams(requests=16, prompt_tokens=32, decode_tokens=192, skew=skew,
                                              locality=locality, cross_layer=cross, seed=0))
            stats = compute_stats(open_trace(out))
            error = sum((getattr(stats, k) - target[k]) ** 2 for k in TARGETS)
            if best is None or error < best[0]:
                best = (error, skew, locality, cross, stats)
    error, skew, locality, cross, stats = best
    print(f"best fit: skew={skew} locality={locality} cross_layer={cross} (squared error {error:.5f})\n")
    print(f"| statistic | gsm8k (real) | humaneval (real) | synth (fitted defaults) |")
    print("|---|---|---|---|")
    for key in SHOWN:
        print(f"| {key} | {getattr(real[0], key):.3f} | {getattr(real[1], key):.3f} | {getattr(stats, key):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
