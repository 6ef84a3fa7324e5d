"""How fast `traces synth` writes a 10-million-row trace shaped like Qwen3-30B-A3B.

The simulator's benchmarks need such traces; the target is well under a minute. Prints rows/s,
seconds, file size and peak resident memory. Run: .venv/bin/python bench/synth_speed.py [--rows N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

from traces.model_specs import load_spec
from traces.synth import SynthParams, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--like", default="qwen3-30b-a3b")
    args = parser.parse_args()
    spec = load_spec(args.like)
    params = SynthParams(requests=1, prompt_tokens=64, decode_tokens=192)
    per_request = (params.prompt_tokens + params.decode_tokens) * spec.num_layers
    params = SynthParams(requests=-(-args.rows // per_request), prompt_tokens=64, decode_tokens=192)
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(spec, Path(tmp) / "warm.parquet", SynthParams(requests=1))  # compile the numba kernel
        result = synthesize(spec, Path(tmp) / "big.parquet", params)
        size = result.path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"synth --like {spec.name}: {result.rows:,} rows in {result.seconds:.1f} s "
          f"({result.rows / result.seconds:,.0f} rows/s), file {size / 2**20:,.0f} MiB, peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
