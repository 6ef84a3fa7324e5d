"""The real engine against its floor and against the simulator's prediction, on OLMoE-sized experts.

Writes a checkpoint with OLMoE-1B-7B's real expert size (64 experts of 12 MiB per layer, top-8) with
as many layers as the disk and memory allow (or --layers), packs it (one read per expert), a synthetic trace of the same shape (two
requests: the first warms the caches, the second is measured), runs `moecache calibrate`'s
measurements, and prints in one run, per decode token of the measured request:
- all experts resident (VRAM holds every expert);
- naive on-demand: no cache (VRAM holds one step's experts, so each expert is copied synchronously
  from RAM, then computed);
- the engine with LRU at VRAM = 25% and 50% of the experts, RAM = all experts;
- the floor, max(resident, bytes copied RAM -> VRAM / measured link bandwidth, bytes read from NVMe / measured
  NVMe bandwidth), and measured / floor
  (target on a GPU: <= 1.2x);
- simulate's prediction of the whole run's time per decode token with the calibrated preset,
  against the measured one (target on a GPU: within 15%);
- with --profile, where the host's time goes in the "all resident" run (cProfile: the per-step parts of the
  replay loop, in ms per layer step, and the functions that take the most time of their own).
Run: .venv/bin/python bench/engine.py [--layers N] [--decode-tokens 32] [--dir build/bench-engine]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]  # this file is
# named engine.py: keep it from shadowing the engine package

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.calibrate import calibrate, write_preset  # noqa: E402
from engine.executor import EngineOptions  # noqa: E402
from engine.like_checkpoint import write_like_checkpoint  # noqa: E402
from engine.pack import pack_checkpoint  # noqa: E402
from engine.replay import replay  # noqa: E402
from simulator.hardware import load_hardware  # noqa: E402
from simulator.replay import SimConfig, simulate  # noqa: E402
from simulator.steps import iter_steps  # noqa: E402
from traces.model_specs import load_spec  # noqa: E402
from traces.reader import open_trace  # noqa: E402
from traces.synth import SynthParams, synthesize  # noqa: E402


def auto_layers(spec, folder: Path) -> int:
    """As many layers as fit in half the free disk and, with RAM and VRAM tiers in host memory, in memory."""
    layer = spec.num_experts * spec.bytes_per_expert
    free_disk = shutil.disk_usage(folder).free
    free_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    tiers = 1.0 if torch.cuda.is_available() else 2.0  # without CUDA the VRAM tier is host memory too
    return max(1, min(spec.num_layers, int(free_disk * 0.5 // layer), int(free_mem * 0.6 // (layer * tiers))))


def measured_request(done, trace_path: Path, request: int) -> tuple[float, int, int, int]:
    """(decode seconds, RAM -> VRAM bytes, NVMe bytes, decode tokens) of one request's decode steps."""
    m = done.executor.measured
    requests, decode, new_token = [], [], []
    for steps in iter_steps(open_trace(trace_path)):
        requests += steps.request.tolist()
        decode += steps.decode.tolist()
        new_token += steps.new_token.tolist()
    pick = (np.array(requests) == request) & np.array(decode)
    return (float(np.array(m.step_s)[pick].sum()), int(np.array(m.step_h2d)[pick].sum()),
            int(np.array(m.step_nvme)[pick].sum()), int((pick & np.array(new_token)).sum()))


LOOP_PARTS = ("iter_steps", "begin_step", "step", "finish_step", "account")  # the replay loop's per-step calls


# where a thread waits rather than works: since Python 3.12 cProfile profiles every thread, the NVMe reader's too
WAITS = ("acquire", "synchronize", "wait", "sleep", "preadv")


def print_host_profile(profile: cProfile.Profile, steps: int, wall: float) -> None:
    """The host's busy time per layer step (waits left out), the replay loop's parts, and the top functions."""
    stats = pstats.Stats(profile)
    busy = sum(tottime for (_, _, name), (_, _, tottime, _, _) in stats.stats.items()
               if not any(w in name for w in WAITS))
    print(f"\nthe all-resident run under cProfile (both requests, the first loading every expert): "
          f"{wall / steps * 1e3:.3f} ms per layer step, of which the host is busy {busy / steps * 1e3:.3f} ms "
          f"(waits on locks, events, streams and disk reads left out); per step, callees included:")
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        if name in LOOP_PARTS and ("engine" in path or "simulator" in path):
            where = f"{Path(path).parent.name}/{Path(path).name}:{name}"
            print(f"  {where:<40}{cumulative / steps * 1e3:8.3f} ms")
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--dir", type=Path, default=Path("build/bench-engine"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint for the next run")
    parser.add_argument("--profile", action="store_true", help="also break down the host's time per step")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.dir.mkdir(parents=True, exist_ok=True)
    spec = load_spec("olmoe-1b-7b")
    layers = args.layers or auto_layers(spec, args.dir)
    spec = dataclasses.replace(spec, num_layers=layers)
    source = args.dir / f"olmoe-like-{layers}"
    checkpoint = args.dir / f"olmoe-like-{layers}-packed"
    if not checkpoint.exists():
        t0 = time.perf_counter()
        write_like_checkpoint(source, spec, layers)
        t1 = time.perf_counter()
        pack_checkpoint(source, checkpoint)
        shutil.rmtree(source)
        print(f"checkpoint: {layers} layers x {spec.num_experts} experts of {spec.bytes_per_expert:,} B, written in "
              f"{t1 - t0:.1f} s, packed in {time.perf_counter() - t1:.1f} s")
    trace = args.dir / f"trace-{layers}.parquet"
    trace.unlink(missing_ok=True)
    synthesize(spec, trace, SynthParams(requests=2, prompt_tokens=args.prompt_tokens,
                                        decode_tokens=args.decode_tokens, seed=1))
    cal = calibrate(spec, torch.device(device), args.dir, 512 << 20)
    preset_path = args.dir / "calibrated.toml"
    write_preset(cal, preset_path)
    preset = load_hardware(preset_path)
    link, disk = cal.figures["pcie_bandwidth"], cal.figures["nvme_bandwidth"]
    print(f"device {cal.device_name}; calibrated: NVMe {cal.figures['nvme_bandwidth'] / 1e9:.2f} GB/s, "
          f"RAM -> VRAM {link / 1e9:.2f} GB/s, expert {cal.figures['gpu_expert_overhead_s'] * 1e6:.1f} us + bytes / "
          f"{cal.figures['gpu_memory_bandwidth'] / 1e9:.1f} GB/s")
    everything = layers * spec.num_experts
    options = EngineOptions(device=device)
    runs = {"all resident": dict(vram_experts=everything), "naive on-demand": dict(vram_experts=spec.top_k),
            "LRU, VRAM 25%": dict(vram_experts=everything // 4), "LRU, VRAM 50%": dict(vram_experts=everything // 2)}
    figures = {}
    for name, caps in runs.items():
        config = SimConfig(policy="lru", hardware=preset, ram_experts=everything, **caps)
        done = replay(trace, checkpoint, config, options)
        seconds, moved, read, tokens = measured_request(done, trace, request=1)
        predicted = simulate(trace, config).time_per_token_s
        figures[name] = (seconds / tokens, moved / tokens, read / tokens, done.measured["measured_time_per_token_s"], predicted,
                         done.result.hit_rate)
    resident = figures["all resident"][0]
    print(f"\nper decode token of the measured request ({device}, {layers} layers, top-{spec.top_k}):")
    print(f"{'run':<18}{'hit rate':>9}{'NVMe MB':>9}{'measured':>12}{'floor':>12}{'/ floor':>9}   "
          f"{'whole run: measured':>20}{'predicted':>12}{'error':>8}")
    for name, (per_token, moved, read, whole, predicted, hit_rate) in figures.items():
        floor = max(resident, moved / link, read / disk)
        print(f"{name:<18}{hit_rate:>9.3f}{read / 1e6:>9.1f}{per_token * 1e3:>10.2f}ms{floor * 1e3:>10.2f}ms{per_token / floor:>8.2f}x   "
              f"{whole * 1e3:>18.2f}ms{predicted * 1e3:>10.2f}ms{(predicted - whole) / whole:>+8.1%}")
    if args.profile:
        config = SimConfig(policy="lru", hardware=preset, ram_experts=everything, **runs["all resident"])
        profile = cProfile.Profile()
        profile.enable()
        done = replay(trace, checkpoint, config, options)
        profile.disable()
        print_host_profile(profile, int(done.measured["measured_steps"]), float(done.measured["measured_total_s"]))
    if not args.keep:
        shutil.rmtree(checkpoint)


if __name__ == "__main__":
    main()
