"""`moecache compare`: sweep policies x prefetchers x VRAM capacities x traces on every core."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from moecache_cli import render
from moecache_cli.cache_options import (BOUND, DEFAULT_PRESET, CpuCompute, Exclusive, Param, PerLayer, PrefetchLimit,
                                        Preset, Ram, RamExperts, bound_params, cache_fields, check_policies, is_bound,
                                        policy_params)
from moecache_cli.config_file import ConfigFile
from moecache_cli.options import Json, Quiet
from simulator.policies import REGISTRY, policy_class
from simulator.prefetchers import PREFETCHERS
from traces.errors import MoecacheError

RESULTS = "results.parquet"
SUMMARY = ("best", "hit rate", "tok/s", "vs Belady", "vs LRU")


def command(
    traces: Annotated[list[Path], typer.Argument(help="One or more traces (.parquet).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results (results.parquet).",
                                      show_default=False)],
    policy: Annotated[list[str], typer.Option("--policy", "-p", help=f"Policy (repeatable): {', '.join(REGISTRY)}.")]
    = ["lru"],  # noqa: B006 - Typer needs a list default
    prefetch: Annotated[list[str], typer.Option(help=f"Prefetcher (repeatable): {', '.join(PREFETCHERS)}.")]
    = ["none"],  # noqa: B006
    vram: Annotated[str | None, typer.Option(help="VRAM capacities in bytes: START:STOP:COUNT (evenly spaced, both "
                                                  "ends included), A,B,C or one size, e.g. 1GiB:16GiB:8.")] = None,
    vram_fraction: Annotated[str | None, typer.Option(help="VRAM capacities as a share of all routed experts, e.g. "
                                                           "0.05:0.5:10.")] = None,
    vram_active: Annotated[str | None, typer.Option(help="VRAM capacities as multiples of one token's active experts "
                                                         "(top-k in every layer), e.g. 1:4:8.")] = None,
    param: Param = [],  # noqa: B006
    preset: Preset = DEFAULT_PRESET,
    ram: Ram = None,
    ram_experts: RamExperts = None,
    per_layer: PerLayer = False,
    exclusive: Exclusive = False,
    cpu_compute: CpuCompute = False,
    prefetch_limit: PrefetchLimit = None,
    bound: Annotated[bool, typer.Option("--bound/--no-bound", help="Add Belady (with bypass) as the bound.")] = True,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Run on a Ray cluster instead: its address, auto (the "
                                                          "running one) or local (start one here). Needs "
                                                          "moecache[ray]; the nodes must see the traces.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the runs already in the folder's results and run "
                                                          "only the others.")] = False,
    routing_bonus: Annotated[list[float], typer.Option(help="Memory-aware routing bonus to sweep as well "
                                                            "(repeatable), on the traces with router logits; "
                                                            "the report plots the hit gain against routing changed.")]
    = [],  # noqa: B006
    runs_files: Annotated[list[Path], typer.Option("--runs", help="Results of `moecache run -o` on these traces "
                                                                  "(repeatable): measured against predicted.")]
    = [],  # noqa: B006
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html (self-contained) and "
                                                                      "report.md with its figures.")] = True,
    json_out: Json = False,
    quiet: Quiet = False,
    config: ConfigFile = None,  # noqa: ARG001 - applied by its callback before the other options
) -> None:
    """Sweep policies, prefetchers and VRAM capacities over traces, on every core, into one results table.

    Examples:
      [bold]moecache compare qwen3.parquet mixtral.parquet -p lru -p lfu -p watermark --vram-active 1:4:8 -o cmp/[/]
      [bold]moecache compare olmoe.parquet -p lru -p s3fifo --prefetch none --prefetch transitions --vram 1GiB:8GiB:8 -o cmp/[/]
      [bold]moecache compare qwen3.parquet -p lru -p arc --vram-fraction 0.05:0.5:10 -o cmp/ --resume[/]  (after Ctrl-C)

    Every run is one `simulate`; results.parquet has one row per run with simulate's names. An
    interrupted sweep keeps the runs it finished; --resume skips them.
    """
    from simulator.config import SimConfig
    from simulator.sweep import check_sweep, parse_capacities
    from simulator.sweep_run import RUN_KEY, default_workers, execute, execute_ray, make_runs
    from traces.reader import open_trace

    given = [(text, kind, flag) for text, kind, flag in ((vram, "bytes", "--vram"),
                                                        (vram_fraction, "fraction", "--vram-fraction"),
                                                        (vram_active, "active", "--vram-active")) if text is not None]
    if len(given) != 1:
        raise MoecacheError("give the VRAM capacities with one of --vram, --vram-fraction or --vram-active")
    text, kind, flag = given[0]
    capacities = parse_capacities(text, kind, flag)
    policies = list(dict.fromkeys(policy))
    check_policies(policies, param)
    prefetchers = list(dict.fromkeys(prefetch))
    if workers is not None and workers < 1:
        raise MoecacheError("--workers must be at least 1")
    if report:
        _require(("matplotlib",), "the report needs matplotlib: pip install 'moecache[report]', or use --no-report")
    if ray is not None:
        _require(("ray",), "--ray needs Ray: pip install 'moecache[ray]'")
    measured = _measured(runs_files, traces)
    fields = cache_fields(preset, None, None, ram, ram_experts, per_layer, exclusive, cpu_compute, "none",
                          prefetch_limit)
    chosen = [(p, policy_params(p, param)) for p in policies]
    if bound:
        chosen.append((BOUND, bound_params()))
    opened = [open_trace(path) for path in traces]
    if routing_bonus and not any(t.has_logits for t in opened):
        raise MoecacheError("--routing-bonus re-routes tokens from router logits, and none of the traces has them; "
                            "record with --logits")
    runs = []
    for trace in opened:
        bonuses = [None, *(routing_bonus if trace.has_logits else [])]
        configs = [SimConfig(policy=name, params=params, routing_bonus=bonus,
                             **{**fields, "prefetch": pf, "vram_bytes": nbytes})
                   for bonus in bonuses for nbytes in capacities.bytes_for(trace.meta) for name, params in chosen
                   for pf in prefetchers if bonus is None or not policy_class(name).needs_future]
        check_sweep(trace, configs, flag, capacities)
        runs += make_runs(trace.path, configs)
    results_path = _output_folder(out) / RESULTS
    kept = _kept(results_path) if resume else []
    done_keys = {r[RUN_KEY] for r in kept}
    todo = [r for r in runs if r.key not in done_keys]
    records = [r for r in kept if r[RUN_KEY] in {run.key for run in runs}]
    with render.progress_bar("comparing", "runs", enabled=not (quiet or json_out)) as update:
        update(len(records), len(runs))

        def keep(record: dict[str, object]) -> None:
            records.append(record)
            _write(records, results_path)
            update(len(records), len(runs))

        try:
            if ray is not None:
                execute_ray(todo, ray, keep)
            else:
                execute(todo, workers or default_workers(), keep,
                        on_compile=None if quiet or json_out else render.say_compiling)
        except KeyboardInterrupt:
            raise MoecacheError(f"interrupted; {len(records)} of {len(runs)} runs are kept in {results_path} "
                                "(--resume runs the others)") from None
    order = {run.key: i for i, run in enumerate(runs)}
    records.sort(key=lambda r: order[r[RUN_KEY]])
    _write(records, results_path)
    summary = summarize(records)
    curves = one_pass_curves(opened, records, cpu_compute) if report or json_out else []
    written = None
    if report:
        from moecache_cli.report import write_report

        written = write_report(results_path.parent, records, summary, f"moecache compare: {len(traces)} trace(s)",
                               measured, curves)
    if json_out:
        render.print_json({"runs": records, "summary": summary, "measured": measured, "curves": curves,
                           "results": str(results_path),
                           "report": None if written is None else str(written)})
        return
    by_trace, by_prefetch = len(traces) > 1, len(prefetchers) > 1  # columns only where they vary
    rows = [[*([Path(s["trace"]).stem] if by_trace else []), render.human_bytes(s["vram_bytes"]).replace(" ", ""),
             *([s["prefetch"]] if by_prefetch else []), s["policy"], f"{s['hit_rate']:.3f}",
             f"{s['tokens_per_s']:,.2f}", _points(s["gap_to_belady"]), _points(s["gain_over_lru"])] for s in summary]
    columns = [*(["trace"] if by_trace else []), "VRAM", *(["prefetch"] if by_prefetch else []), *SUMMARY]
    render.grid("best policy per VRAM budget (hit rate; Belady's lead and the gain over LRU in points)", columns,
                rows, compact=True)
    render.console.print(f"results: {results_path} ({len(records)} runs)")
    if written is not None:
        render.console.print(f"report: {written} (and {written.with_suffix('.md').name} with figures/)")


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}"


def summarize(records: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per trace, VRAM budget and prefetcher: the policy of best hit rate (the bound aside), its tokens/s, how far
    Belady's hit rate is above it, and how far it is above LRU's (None where either was not run)."""
    groups: dict[tuple, list[dict[str, object]]] = {}
    for r in records:
        if r["routing_bonus"]:  # re-routed runs change the model's choices: they have their own figure
            continue
        groups.setdefault((r["trace"], r["vram_bytes"], r["prefetch"]), []).append(r)
    summary = []
    for (trace, vram_bytes, prefetch), runs in groups.items():
        bound = next((r for r in runs if is_bound(r["policy"], r["policy_params"])), None)
        lru = next((r for r in runs if r["policy"] == "lru"), None)
        candidates = [r for r in runs if r is not bound]
        if not candidates:
            continue
        best = max(candidates, key=lambda r: (r["hit_rate"], r["tokens_per_s"]))
        summary.append({"trace": trace, "vram_bytes": vram_bytes, "prefetch": prefetch, "policy": best["policy"],
                        "hit_rate": best["hit_rate"], "tokens_per_s": best["tokens_per_s"],
                        "gap_to_belady": None if bound is None else bound["hit_rate"] - best["hit_rate"],
                        "gain_over_lru": None if lru is None else best["hit_rate"] - lru["hit_rate"]})
    return summary


def one_pass_curves(traces: list, records: list[dict[str, object]], cpu_compute: bool) -> list[dict]:
    """LRU's and Belady's hit rate at every capacity from one pass over each trace whose runs (re-routed ones aside)
    are all plain demand caching, as `simulate` resolved them (one cache, no RAM tier), with no prefetching or CPU
    compute; other traces get none."""
    from simulator.config import SEQUENTIAL_MODE
    from simulator.replay import miss_ratio_curves

    curves = []
    for trace in traces:
        runs = [r for r in records if r["trace"] == str(trace.path) and not r["routing_bonus"]]
        if cpu_compute or not runs or any(r["mode"] != SEQUENTIAL_MODE or r["prefetch"] != "none" for r in runs):
            continue
        curve = miss_ratio_curves(trace)
        size = max(trace.meta.expert_bytes(layer) for layer in range(trace.meta.num_layers))
        curves.append({"trace": curve["trace"], "vram_bytes": [c * size for c in curve["capacity"]],
                       "lru": [1 - m for m in curve["lru"]], "belady": [1 - m for m in curve["belady"]]})
    return curves


def _measured(files: list[Path], traces: list[Path]) -> list[dict[str, object]]:
    """The records of `moecache run -o` files, each of one of the compared traces (same path, or same file name
    when it was run from another folder)."""
    paths = {p.resolve() for p in traces}
    names = {p.name for p in traces}
    out = []
    for path in files:
        if not path.is_file():
            raise MoecacheError(f"--runs {path}: no such file")
        for record in _read_records(path, f"--runs {path}: not a readable Parquet file"):
            if "measured_time_per_token_s" not in record:
                raise MoecacheError(f"--runs {path}: not a `moecache run` result (no measured_* fields)")
            trace = Path(str(record["trace"]))
            if trace.resolve() not in paths and trace.name not in names:
                raise MoecacheError(f"--runs {path}: its run replayed {trace}, which is not among the compared traces")
            out.append(record)
    return out


def _require(modules: tuple[str, ...], message: str) -> None:
    """Optional extras are checked before the sweep starts."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in modules):
        raise MoecacheError(message)


def _output_folder(out: Path) -> Path:
    """The output folder, created if needed; one line if it cannot be, or cannot be written."""
    if not out.resolve().parent.is_dir():
        raise MoecacheError(f"{out}: folder {out.resolve().parent} does not exist; create it first")
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise MoecacheError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    if not out.is_dir():
        raise MoecacheError(f"{out}: is a file; give a folder for the results")
    if not os.access(out, os.W_OK | os.X_OK):
        raise MoecacheError(f"{out}: the output folder is not writable")
    return out


def _kept(path: Path) -> list[dict[str, object]]:
    """The records of an earlier sweep into the same folder."""
    if not path.exists():
        return []
    return _read_records(path, f"{path}: cannot read the earlier results to resume")


def _read_records(path: Path, failure: str) -> list[dict[str, object]]:
    """A Parquet file's rows as records; `failure` and the reason in one line if it cannot be read."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MoecacheError(f"{failure} ({str(exc).splitlines()[0]})") from None


def _write(records: list[dict[str, object]], path: Path) -> None:
    from simulator.metrics import write_parquet

    write_parquet(records, path)
