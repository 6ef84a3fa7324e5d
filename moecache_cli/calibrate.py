"""`moecache calibrate`: measure this machine and write a hardware preset for `simulate` and `compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.options import LikeSpec
from traces.atomic import check_writable
from traces.errors import MoecacheError


def command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The preset to write (.toml).", show_default=False)],
    like: LikeSpec = "olmoe-1b-7b",
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cuda or cpu.")] = "auto",
    disk_dir: Annotated[Path, typer.Option("--dir", help="Folder on the disk that holds the checkpoints (a scratch "
                                                         "file is written and removed there).")] = Path("."),
    disk_mib: Annotated[int, typer.Option(help="Size of the scratch file for the disk read test, in MiB.")] = 256,
) -> None:
    r"""Measure this machine's links and expert compute, and write a hardware preset.

    It measures cold NVMe reads, RAM -> VRAM copies and the expert compute time of a model's expert shape (a fixed
    cost per expert plus bytes over bandwidth); the preset's \[sources] say what was measured, when and where.

    Example: [bold]moecache calibrate --like olmoe-1b-7b -o build/this-machine.toml[/], then
    [bold]moecache simulate trace.parquet --preset build/this-machine.toml[/] predicts what `moecache run` measures.
    """
    import torch

    from engine.calibrate import calibrate, write_preset
    from engine.device import resolve_device
    from traces.model_specs import load_spec

    if out.suffix != ".toml":
        raise MoecacheError(f"{out}: a preset is a .toml file")
    check_writable(out)
    if not disk_dir.is_dir():
        raise MoecacheError(f"--dir {disk_dir}: no such folder")
    if disk_mib < 16:
        raise MoecacheError("--disk-mib must be at least 16")
    spec = load_spec(like)
    render.err_console.print(f"calibrating with {spec.name}'s expert shape (disk, link, compute) ...")
    cal = calibrate(spec, torch.device(resolve_device(device)), disk_dir, disk_mib << 20)
    write_preset(cal, out)
    f = cal.figures
    render.key_values(f"preset written: {out}", [
        ("device", cal.device_name),
        ("NVMe read", f"{f['nvme_bandwidth'] / 1e9:.2f} GB/s, {f['nvme_latency_s'] * 1e6:.0f} us"),
        ("RAM -> VRAM", f"{f['pcie_bandwidth'] / 1e9:.2f} GB/s, {f['pcie_latency_s'] * 1e6:.1f} us"),
        ("expert compute", f"{f['gpu_expert_overhead_s'] * 1e6:.1f} us + bytes / "
                           f"{f['gpu_memory_bandwidth'] / 1e9:.1f} GB/s"),
        ("matrix product", f"{f['gpu_flops'] / 1e12:.2f} TFLOP/s")])
