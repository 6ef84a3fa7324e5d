"""`moecache calibrate`: measure this machine's links and expert compute, and write a hardware preset.

Each figure is measured the way the engine uses the hardware, after a warm-up, with the device
synchronised around every timer:
- NVMe: a scratch file written, flushed and dropped from the page cache, then read back with
  O_DIRECT (else with posix_fadvise DONTNEED) one expert-sized block after another, each split in
  chunks over 8 threads as the NVMe tier reads a demand miss (bandwidth), and in 4 KiB reads at
  random offsets by one thread (latency);
- PCIe: expert-sized copies from pinned RAM to the GPU, and 4 KiB copies for the latency (without
  CUDA, host-to-host copies, since the VRAM tier is then host memory);
- compute: one decode step of top-k experts of the model's shape computed from slot buffers as the
  engine computes them, at the full and at a quarter of the expert's width, fitted as
  time = overhead + bytes / bandwidth per expert; FLOP/s from a large matrix product.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.compute import BatchedDecode, GATHER_LIMIT, expert_ffn, slot_views
from engine.layout import ALIGN, round_up, slot_format
from engine.nvme import CHUNK, _pread_all, aligned_empty, drop_cached, open_uncached
from traces.atomic import discard, publish, temporary_sibling
from traces.model_specs import ModelSpec


@dataclass
class Calibration:
    figures: dict[str, float]
    sources: dict[str, str]
    dtypes: list[str]
    device_name: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_disk(folder: Path, block: int, total: int, threads: int = 8) -> tuple[float, float, bool]:
    """(bandwidth B/s, latency s, O_DIRECT used) of cold reads from a scratch file in `folder`."""
    block = round_up(block, ALIGN)
    total = max(round_up(total, block), block * threads)
    path = folder / f".moecache-calibrate-{os.getpid()}"
    try:
        chunk = np.random.default_rng(0).integers(0, 256, min(total, 16 << 20), dtype=np.uint8)
        with open(path, "wb") as f:
            for start in range(0, total, len(chunk)):
                f.write(chunk[:min(len(chunk), total - start)].data)
            f.flush()
            os.fsync(f.fileno())
        fd, direct = open_uncached(path)
        try:
            drop_cached(fd)
            buf = aligned_empty(block)

            def read(offset: int, n: int, at: int) -> None:
                _pread_all(fd, buf[at:at + n], offset)
                if not direct:
                    drop_cached(fd, offset, n)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                for start in range(0, total, block):  # one expert after another, its chunks in parallel
                    list(pool.map(lambda at: read(start + at, min(CHUNK, block - at), at), range(0, block, CHUNK)))
            bandwidth = total / (time.perf_counter() - t0)
            drop_cached(fd)
            small = aligned_empty(ALIGN)
            rng = np.random.default_rng(1)
            lat = []
            for offset in (int(o) for o in rng.integers(0, total // ALIGN, 64) * ALIGN):
                t0 = time.perf_counter()
                _pread_all(fd, small, offset)
                lat.append(time.perf_counter() - t0)
                if not direct:
                    drop_cached(fd, offset, ALIGN)
            return bandwidth, float(np.median(lat)), direct
        finally:
            os.close(fd)
    finally:
        path.unlink(missing_ok=True)


def measure_link(device: torch.device, nbytes: int) -> tuple[float, float]:
    """(bandwidth B/s, latency s) of RAM -> VRAM copies (pinned host to GPU; host to host without CUDA)."""
    cuda = device.type == "cuda"
    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=cuda)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(1)
    big = _timed(lambda: dst.copy_(src, non_blocking=cuda), device, 20)
    small = _timed(lambda: dst[:ALIGN].copy_(src[:ALIGN], non_blocking=cuda), device, 50)
    return nbytes / max(big - small, 1e-9), small


def measure_expert(spec: ModelSpec, device: torch.device, dtype: torch.dtype,
                   arena_bytes: int = 512 << 20) -> tuple[float, float]:
    """(fixed seconds per expert, bytes/s) of one decode step's top-k experts computed from slots. The slots
    cycle through an arena larger than the caches, as a replay's experts do."""
    kind = "gpt_oss" if spec.architecture == "gpt_oss" else "swiglu"
    k = spec.top_k
    points = []
    for inter in (spec.expert_intermediate_size, max(spec.expert_intermediate_size // 4, 8)):
        fmt = slot_format(kind, str(dtype).removeprefix("torch."), spec.hidden_size, inter)
        groups = max(2, arena_bytes // (k * fmt.slot_bytes))
        arena = torch.empty((groups * k, fmt.slot_bytes), dtype=torch.uint8, device=device)
        arena.view(dtype).normal_(0, 0.02)
        views = slot_views(arena, fmt)
        x = torch.randn(1, spec.hidden_size, device=device).to(dtype)
        w = torch.full((1, 1), 1.0 / k, device=device)
        out = torch.zeros(1, spec.hidden_size, device=device)
        turn = iter(range(1 << 40))
        if device.type == "cuda" and fmt.expert_bytes <= GATHER_LIMIT:
            batched = BatchedDecode(arena, fmt, k, 7.0)
            weights = torch.full((k,), 1.0 / k, device=device)
            slot_sets = [torch.arange(g * k, (g + 1) * k, device=device) for g in range(groups)]

            def step() -> None:
                out.add_(batched(slot_sets[next(turn) % groups], x, weights).float())
        else:
            def step() -> None:
                g = next(turn) % groups
                for v in views[g * k:(g + 1) * k]:
                    out.add_(expert_ffn(x, v, fmt, 7.0).float() * w)
        points.append((fmt.expert_bytes, _timed(step, device, max(10, groups)) / k))
    (b1, t1), (b2, t2) = points
    bandwidth = (b1 - b2) / max(t1 - t2, 1e-9)
    fixed = max(t1 - b1 / bandwidth, 1e-7)
    return fixed, bandwidth


def measure_flops(device: torch.device, dtype: torch.dtype) -> float:
    n = 4096 if device.type == "cuda" else 768
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / _timed(lambda: a @ b, device, 5)


def calibrate(spec: ModelSpec, device: torch.device, folder: Path, disk_bytes: int) -> Calibration:
    dtype = torch.bfloat16 if spec.dtype not in ("float32", "float16") else getattr(torch, spec.dtype)
    block = slot_format("gpt_oss" if spec.architecture == "gpt_oss" else "swiglu", str(dtype).removeprefix("torch."),
                        spec.hidden_size, spec.expert_intermediate_size).slot_bytes
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    where = f"measured by moecache calibrate on {name}, {when}"
    nvme_bw, nvme_lat, direct = measure_disk(folder, block, disk_bytes)
    link_bw, link_lat = measure_link(device, block)
    fixed, mem_bw = measure_expert(spec, device, dtype)
    flops = measure_flops(device, dtype)
    cpu = torch.device("cpu")
    if cuda:
        cpu_fixed, cpu_bw = measure_expert(spec, cpu, dtype)
        cpu_flops = measure_flops(cpu, dtype)
        vram = int(torch.cuda.mem_get_info(device)[0] * 0.8)
    else:
        cpu_fixed, cpu_bw, cpu_flops = fixed, mem_bw, flops
    ram = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    if not cuda:
        vram = ram // 4
    read_how = "O_DIRECT" if direct else "plain reads with posix_fadvise DONTNEED"
    disk = f"{disk_bytes / 2**20:.0f} MiB scratch file in {folder.resolve()}"
    shape = f"{spec.name} experts (hidden {spec.hidden_size}, intermediate {spec.expert_intermediate_size}, " \
            f"top-{spec.top_k}, {str(dtype).removeprefix('torch.')})"
    figures = {"vram_bytes": vram, "ram_bytes": ram, "pcie_bandwidth": link_bw, "pcie_latency_s": link_lat,
               "nvme_bandwidth": nvme_bw, "nvme_latency_s": nvme_lat, "gpu_flops": flops,
               "gpu_memory_bandwidth": mem_bw, "cpu_flops": cpu_flops, "cpu_memory_bandwidth": cpu_bw,
               "gpu_expert_overhead_s": fixed, "cpu_expert_overhead_s": cpu_fixed}
    link = "pinned RAM -> GPU copies" if cuda else "host -> host copies (no CUDA: the VRAM tier is host memory)"
    compute_dev = "the GPU" if cuda else "the CPU (no CUDA)"
    sources = {
        "vram_bytes": f"{where}: 80% of the GPU's free memory" if cuda else f"{where}: a quarter of RAM (no CUDA)",
        "ram_bytes": f"{where}: half of physical RAM",
        "pcie_bandwidth": f"{where}: {block:,}-byte {link}, median of 20",
        "pcie_latency_s": f"{where}: 4 KiB {link}, median of 50",
        "nvme_bandwidth": f"{where}: {disk}, {block:,}-byte blocks one after another, each in {CHUNK >> 20} MiB "
                          f"chunks over 8 threads, {read_how}",
        "nvme_latency_s": f"{where}: {disk}, 64 random 4 KiB reads, one thread, {read_how}, median",
        "gpu_flops": f"{where}: square matrix product on {compute_dev}",
        "gpu_memory_bandwidth": f"{where}: slope of a decode step of {shape} on {compute_dev} at two widths",
        "cpu_flops": f"{where}: square matrix product on the CPU",
        "cpu_memory_bandwidth": f"{where}: slope of a decode step of {shape} on the CPU at two widths",
        "gpu_expert_overhead_s": f"{where}: intercept of the same fit on {compute_dev}, per expert",
        "cpu_expert_overhead_s": f"{where}: intercept of the same fit on the CPU, per expert",
        "dtypes": f"{where}: the precisions torch computes on {compute_dev}",
    }
    return Calibration(figures, sources, ["float32", "bfloat16", "float16"], name)


def preset_toml(cal: Calibration, name: str) -> str:
    lines = [f"# Measured by `moecache calibrate` on {cal.device_name}.", f'name = "{name}"',
             f'description = "measured on {cal.device_name}"']
    for key, value in cal.figures.items():
        lines.append(f"{key} = {int(value)}" if key.endswith("_bytes") else f"{key} = {value:.6g}")
    lines.append("dtypes = [" + ", ".join(f'"{d}"' for d in cal.dtypes) + "]")
    lines += ["", "[sources]"] + [f'{key} = "{text}"' for key, text in cal.sources.items()]
    return "\n".join(lines) + "\n"


def write_preset(cal: Calibration, path: Path) -> None:
    """Write the preset atomically."""
    tmp = temporary_sibling(path)
    try:
        tmp.write_text(preset_toml(cal, path.stem))
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise
