"""`moecache run`: the chosen policy for real, expert weights moving NVMe -> pinned RAM -> VRAM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.cache_options import (DEFAULT_PRESET, CpuCompute, Exclusive, Param, PerLayer, Prefetch,
                                        PrefetchLimit, Preset, Ram, RamExperts, Vram, VramExperts, cache_fields,
                                        check_policies, policy_params)
from moecache_cli.config_file import ConfigFile
from moecache_cli.options import Json, Quiet, Seed, TraceFile
from simulator.policies import REGISTRY
from traces.atomic import check_writable
from traces.errors import MoecacheError

COMPARED = (("hit_rate", "hit_rate", None), ("vram_misses", "vram_misses", None),
            ("NVMe -> RAM bytes", "bytes_nvme_to_ram", "measured_bytes_nvme_to_ram"),
            ("RAM -> VRAM bytes", "bytes_ram_to_vram", "measured_bytes_ram_to_vram"),
            ("stall_p50_ms", "stall_p50_ms", "measured_stall_p50_ms"),
            ("stall_p99_ms", "stall_p99_ms", "measured_stall_p99_ms"),
            ("time_per_token_s", "time_per_token_s", "measured_time_per_token_s"),
            ("tokens_per_s", "tokens_per_s", "measured_tokens_per_s"))


def command(
    trace: TraceFile,
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Checkpoint folder: the model's own safetensors, "
                                                                  "or a `moecache pack` output.",
                                          show_default=False)],
    policy: Annotated[str, typer.Option("--policy", "-p", help=f"Policy: {', '.join(REGISTRY)}.")] = "lru",
    param: Param = [],  # noqa: B006 - Typer needs a list default
    preset: Preset = DEFAULT_PRESET,
    vram: Vram = None,
    vram_experts: VramExperts = None,
    ram: Ram = None,
    ram_experts: RamExperts = None,
    per_layer: PerLayer = False,
    exclusive: Exclusive = False,
    cpu_compute: CpuCompute = False,
    prefetch: Prefetch = "none",
    prefetch_limit: PrefetchLimit = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cuda, cuda:N or cpu. Without CUDA the VRAM tier is a "
                                             "host-memory budget.")] = "auto",
    threads: Annotated[int, typer.Option(help="NVMe reader threads.")] = 8,
    direct: Annotated[bool, typer.Option("--direct/--no-direct", help="Read with O_DIRECT where the filesystem "
                                                                      "allows it (cold reads are disk reads).")] = True,
    live: Annotated[bool, typer.Option("--live/--no-live", help="The live table (--no-live for logs and CI).")]
    = True,
    seed: Seed = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the run's record to this Parquet file.")]
    = None,
    json_out: Json = False,
    quiet: Quiet = False,
    config: ConfigFile = None,  # noqa: ARG001 - applied by its callback before the other options
) -> int:
    """Replay a trace over real expert weights, moving and computing them, and measure the time.

    The policy decides as in simulate; the engine moves the bytes NVMe -> RAM -> VRAM and computes each step's
    experts from the cache slots.

    Examples:
      [bold]moecache run tiny.parquet -w ./tiny-mixtral -p lru --vram-experts 6 --ram-experts 12[/]
      [bold]moecache run olmoe.parquet -w ./olmoe-packed -p watermark --vram 2GiB --ram 8GiB --prefetch transitions[/]

    The counters (hits, misses, bytes, prefetches) equal `moecache simulate`'s with the same flags; the
    measured_* fields are what this machine really did. Ctrl-C stops and prints the summary so far (exit 2).
    """
    from engine.device import resolve_device
    from engine.executor import EngineOptions
    from engine.replay import replay
    from simulator.config import SimConfig
    from simulator.metrics import write_parquet

    check_policies([policy], param)
    if threads < 1:
        raise MoecacheError("--threads must be at least 1")
    fields = cache_fields(preset, vram, vram_experts, ram, ram_experts, per_layer, exclusive, cpu_compute, prefetch,
                          prefetch_limit)
    config = SimConfig(policy=policy, params=policy_params(policy, param), engine="reference", **fields)
    if out is not None:
        check_writable(out)
    options = EngineOptions(device=resolve_device(device), threads=threads, direct=direct, seed=seed)
    title = f"moecache run: {policy} on {trace.name} ({options.device})"
    with render.live_run(title, enabled=live and not (quiet or json_out)) as update:
        done = replay(trace, weights, config, options, on_update=update)
    record = done.record()
    if out is not None:
        write_parquet([record], out)
    if json_out:
        render.print_json({"runs": [record]})
    else:
        _print(record)
    if done.interrupted:
        render.err_console.print("moecache: interrupted; the summary above covers the steps done so far")
        return 2
    return 0


def _print(record: dict[str, object]) -> None:
    render.key_values("run", [
        ("trace", record["trace"]), ("policy", record["policy"]), ("prefetch", record["prefetch"]),
        ("device", record["measured_device"] + ("" if record["measured_device"] == "cuda" else
                                                " (VRAM tier is a host-memory budget)")),
        ("vram", render.human_bytes(record["vram_bytes"])),
        ("ram", render.human_bytes(record["ram_bytes"]) if record["ram_bytes"] else "none (NVMe only)"),
        ("O_DIRECT reads", record["measured_o_direct"]), ("wall time (s)", record["measured_total_s"])])
    rows = []
    for label, predicted, measured in COMPARED:
        values = [record[predicted], record[measured] if measured else record[predicted]]
        if "bytes" in label:
            values = [render.human_bytes(v) for v in values]
        rows.append([label, *values])
    render.grid("planned and predicted (simulate) vs measured (run)", ["metric", "simulate", "run"], rows)
