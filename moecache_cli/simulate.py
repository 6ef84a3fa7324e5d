"""`moecache simulate`: replay traces through placement policies over VRAM, RAM and NVMe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np

import typer

from moecache_cli import render
from moecache_cli.cache_options import (BOUND, DEFAULT_PRESET, CpuCompute, Exclusive, Param, PerLayer, Prefetch,
                                        PrefetchLimit, Preset, Ram, RamExperts, Vram, VramExperts, bound_params,
                                        cache_fields, check_policies, is_bound, policy_params)
from moecache_cli.config_file import ConfigFile
from moecache_cli.options import Json, Quiet
from simulator.policies import REGISTRY
from traces.atomic import check_writable
from traces.reader import open_trace

if TYPE_CHECKING:
    from simulator.metrics import RunResult

SHOWN = ("hit_rate", "vram_hits", "vram_misses", "compulsory_misses", "capacity_misses", "staged", "ram_hit_rate",
         "evictions", "bytes_nvme_to_ram", "bytes_ram_to_vram", "prefetch_issued", "prefetch_accuracy",
         "prefetch_coverage", "stall_p50_ms", "stall_p99_ms", "compute_s", "transfer_s", "stall_s",
         "time_per_token_s", "tokens_per_s", "routing_changed_steps", "routing_weight_lost")
BYTES = ("bytes_nvme_to_ram", "bytes_ram_to_vram")
COMPACT = ("policy", "hit rate", "misses", "NVMe->RAM", "RAM->VRAM", "p99 ms", "tokens/s")
FULL_METRIC_WIDTH = 26  # the metric-name column of the full table, borders included


def command(
    traces: Annotated[list[Path], typer.Argument(help="One or more traces (.parquet).", show_default=False)],
    policy: Annotated[list[str], typer.Option("--policy", "-p", help=f"Policy (repeatable): {', '.join(REGISTRY)}.")]
    = ["lru"],  # noqa: B006 - Typer needs a list default
    param: Param = [],  # noqa: B006
    preset: Preset = DEFAULT_PRESET,
    vram: Vram = None,
    vram_experts: VramExperts = None,
    ram: Ram = None,
    ram_experts: RamExperts = None,
    per_layer: PerLayer = False,
    exclusive: Exclusive = False,
    sequential: Annotated[bool | None, typer.Option("--sequential/--pinned", help="One request per expert with "
                                                    "nothing pinned (libCacheSim's demand caching), or whole steps "
                                                    "pinned. Default: sequential only with --global and --ram 0.",
                                                    show_default=False)] = None,
    cpu_compute: CpuCompute = False,
    prefetch: Prefetch = "none",
    prefetch_limit: PrefetchLimit = None,
    routing_bonus: Annotated[float | None, typer.Option(help="Memory-aware routing: add this to the router logits "
                                                             "of VRAM-resident experts (needs --logits traces).")]
    = None,
    precision: Annotated[str | None, typer.Option(help="Count expert bytes at this precision (e.g. float8, int8) "
                                                       "instead of the trace's dtype.")] = None,
    mrc: Annotated[bool, typer.Option("--mrc", help="Instead: LRU and Belady miss ratios at every capacity "
                                                    "(global demand caching), from one pass each.")] = False,
    bound: Annotated[bool, typer.Option("--bound/--no-bound", help="Add Belady as the bound column.")] = True,
    engine: Annotated[str, typer.Option(help="fast (numba; plain demand caching takes its own tight loop), kernel (the general "
                                            "numba kernel for every mode), or reference (plain Python, for checking).")] = "fast",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write every run's metrics to this Parquet file.")]
    = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every metric, policies side by side, however wide the "
                                                      "terminal; by default a terminal too narrow for that gets "
                                                      "policies as rows and the key metrics.")] = False,
    json_out: Json = False,
    quiet: Quiet = False,
    config: ConfigFile = None,  # noqa: ARG001 - applied by its callback before the other options
) -> None:
    """Replay traces through placement policies and predict hit rates, bytes moved and tokens/s.

    Examples:
      [bold]moecache simulate gsm8k.parquet -p lru -p watermark --vram-experts 4 --per-layer[/]
      [bold]moecache simulate qwen3.parquet -p lfu --vram 8GiB --ram 32GiB --preset laptop-8gb --prefetch lookahead[/]
      [bold]moecache simulate gsm8k.parquet -p fifo --global --ram 0 --vram-experts 64 --json[/]  (libCacheSim's setting)

    Several policies print side by side (one table per trace), with Belady as the bound.
    """
    from simulator.metrics import write_parquet
    from simulator.replay import SimConfig, miss_ratio_curves, simulate

    policies = list(dict.fromkeys(policy))
    check_policies(policies, param)
    opened = [open_trace(path) for path in traces]
    if mrc:
        _print_curves([miss_ratio_curves(trace) for trace in opened], json_out)
        return
    base = dict(**cache_fields(preset, vram, vram_experts, ram, ram_experts, per_layer, exclusive, cpu_compute,
                               prefetch, prefetch_limit), sequential=sequential, routing_bonus=routing_bonus,
                precision=precision, engine=engine)
    if out is not None:
        check_writable(out)
    configs = [SimConfig(policy=p, params=policy_params(p, param), **base) for p in policies]
    if bound and routing_bonus is None:  # Belady that may also bypass: a bound for every demand policy
        configs.append(SimConfig(policy=BOUND, params=bound_params(), **base))
    total = sum(t.num_rows for t in opened) * len(configs)
    results: list[RunResult] = []
    shown = not (quiet or json_out)
    with render.compile_notice(shown), render.progress_bar("simulating", "rows", enabled=shown) as update:
        done = 0
        for trace in opened:
            for config in configs:
                def progress(rows: int, _total: int, before: int = done) -> None:
                    update(before + rows, total)
                results.append(simulate(trace.path, config, progress=progress))
                done += trace.num_rows
    if out is not None:
        write_parquet(results, out)
    if json_out:
        render.print_json({"runs": [r.to_dict() for r in results]})
        return
    _print(results, wide)


def _print(results: list[RunResult], wide: bool) -> None:
    first = results[0]
    render.key_values("configuration", [
        ("preset", first.preset), ("model", first.model), ("vram", render.human_bytes(first.vram_bytes)),
        ("ram", render.human_bytes(first.ram_bytes) if first.ram_bytes else "none (NVMe only)"),
        ("mode", first.mode), ("prefetch", first.prefetch), ("accesses", first.accesses)])
    for trace in dict.fromkeys(r.trace for r in results):  # one table per trace, policies side by side
        runs = [r for r in results if r.trace == trace]
        names = [f"{r.policy}{' (bound)' if is_bound(r.policy, r.policy_params) else ''}" for r in runs]
        if not wide and FULL_METRIC_WIDTH + sum(max(len(n), 10) + 3 for n in names) > render.console.width:
            rows = [[name, f"{r.hit_rate:.3f}", r.vram_misses, render.human_bytes(r.bytes_nvme_to_ram),
                     render.human_bytes(r.bytes_ram_to_vram), f"{r.stall_p99_ms:,.1f}", f"{r.tokens_per_s:,.2f}"]
                    for name, r in zip(names, runs)]
            render.grid(f"simulation: {trace} (--wide or --json for every metric)", COMPACT, rows, compact=True)
            continue
        rows = []
        for key in SHOWN:
            values = [getattr(r, key) for r in runs]
            rows.append([key, *([render.human_bytes(v) for v in values] if key in BYTES else values)])
        render.grid(f"simulation: {trace}", ["metric", *names], rows, whole=wide)


def _print_curves(curves: list[dict[str, object]], json_out: bool) -> None:
    if json_out:
        render.print_json({"curves": curves})
        return
    for curve in curves:
        capacities = curve["capacity"]
        picks = sorted(set(np.linspace(1, len(capacities), min(16, len(capacities))).round().astype(int)))
        render.grid(f"miss ratio by capacity (experts, global demand caching): {curve['trace']}",
                    ["capacity", "lru", "belady"],
                    [[capacities[i - 1], curve["lru"][i - 1], curve["belady"][i - 1]] for i in picks])
