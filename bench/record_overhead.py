"""What recording costs: the same greedy KV-cache generation with and without `record`'s hooks.

Builds a small random Mixtral-architecture checkpoint (no download), warms up, then times
(a) a plain prefill + decode loop and (b) `traces.recording.record` over the same prompts, with
and without --logits --lookahead. Prints tokens/s and the overhead as a ratio measured in the
same run. Run: .venv/bin/python bench/record_overhead.py [--hidden 512 --layers 8 --tokens 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from engine.tiny_checkpoint import write_tiny_checkpoint
from traces.recording import RecordOptions, load_model, record

PROMPTS = ["Mixture-of-Experts models route each token to a few experts.",
           "An edge box has little VRAM, so experts move between tiers."]


@torch.inference_mode()
def plain_generation(model, tokenizer, prompts: list[str], new_tokens: int) -> int:
    """The loop `record` runs, without hooks or writing; returns tokens processed."""
    done = 0
    for text in prompts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        out = model(input_ids=ids, use_cache=True)
        done += ids.shape[1]
        for _ in range(new_tokens):
            token = torch.argmax(out.logits[0, -1]).view(1, 1)
            out = model(input_ids=token, use_cache=True, cache=out.cache)
            done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per prompt")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpt", "mixtral", layers=args.layers, experts=args.experts,
                                     hidden=args.hidden)
        model, tokenizer = load_model(ckpt, "cpu", "auto")
        plain_generation(model, tokenizer, PROMPTS[:1], 8)  # warm-up
        rows = {}
        best_plain = min(_timed(lambda: plain_generation(model, tokenizer, PROMPTS, args.tokens))
                         for _ in range(args.repeats))
        tokens = plain_generation(model, tokenizer, PROMPTS, args.tokens)
        rows["plain generation"] = best_plain
        for label, extra in (("record", {}), ("record --logits --lookahead", {"logits": True, "lookahead": True})):
            options = RecordOptions(max_new_tokens=args.tokens, stop_at_eos=False, **extra)
            rows[label] = min(record(ckpt, PROMPTS, Path(tmp) / "t.parquet", options).seconds
                              for _ in range(args.repeats))
    print(f"model: mixtral-architecture, hidden {args.hidden}, {args.layers} layers, {args.experts} experts; "
          f"{tokens} tokens per run, best of {args.repeats}, CPU, {torch.get_num_threads()} threads")
    print(f"{'run':30} {'seconds':>8} {'tokens/s':>9} {'vs plain':>9}")
    for label, seconds in rows.items():
        print(f"{label:30} {seconds:8.3f} {tokens / seconds:9.1f} {seconds / best_plain:8.3f}x")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
