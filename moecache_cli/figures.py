"""The report's figures (matplotlib, no display): each a function of the sweep's records returning PNG bytes.

Records are `compare`'s rows (DESIGN.md section 7's names). Capacities are shown in GiB of VRAM, one
panel per trace; every axis says its unit. Figures are sized to stay legible printed on A4.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from moecache_cli.cache_options import is_bound as bound_run
from moecache_cli.render import human_bytes

GIB = 2**30
WIDTH, PANEL_HEIGHT = 8.0, 3.4


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})
    return plt


def is_bound(record: dict) -> bool:
    return bound_run(record["policy"], record["policy_params"])


def label(record: dict, prefetchers: int) -> str:
    name = "Belady (bound)" if is_bound(record) else record["policy"]
    return f"{name}, prefetch {record['prefetch']}" if prefetchers > 1 else name


def tick(record: dict, prefetchers: int) -> str:
    """A capacity with the best policy there (and its prefetcher when the sweep has several)."""
    extra = f"\n{record['prefetch']}" if prefetchers > 1 else ""
    return f"{human_bytes(record['vram_bytes'])}\n{record['policy']}{extra}"


def _panels(records: Sequence[dict]):
    """pyplot, the figure, and (trace, axes, its records) for one panel per trace."""
    plt = _plt()
    traces = list(dict.fromkeys(r["trace"] for r in records))
    fig, axes = plt.subplots(len(traces), 1, figsize=(WIDTH, PANEL_HEIGHT * len(traces)), squeeze=False)
    return plt, fig, [(trace, axes[i][0], [r for r in records if r["trace"] == trace]) for i, trace in
                      enumerate(traces)]


def _lines(runs: Sequence[dict], name) -> dict[str, list[dict]]:
    """The runs grouped by `name(run)`, each group in order of VRAM capacity."""
    groups: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: r["vram_bytes"]):
        groups.setdefault(name(run), []).append(run)
    return groups


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def hit_rate(records: Sequence[dict], curves: Sequence[dict] = ()) -> bytes:
    """Hit rate against VRAM per policy (and prefetcher), Belady with bypass dashed as the bound; LRU's and
    Belady's one-pass curves, where given, as thin grey lines over the sweep's range."""
    plt, fig, panels = _panels(records)
    prefetchers = len({r["prefetch"] for r in records})
    for trace, ax, runs in panels:
        for curve in (c for c in curves if c["trace"] == trace):
            low, high = min(r["vram_bytes"] for r in runs), max(r["vram_bytes"] for r in runs)
            shown = [i for i, v in enumerate(curve["vram_bytes"]) if low <= v <= high]
            x = [curve["vram_bytes"][i] / GIB for i in shown]
            ax.plot(x, [curve["lru"][i] for i in shown], color="0.6", linewidth=0.8, label="LRU, every capacity")
            ax.plot(x, [curve["belady"][i] for i in shown], ":", color="0.4", linewidth=0.8,
                    label="Belady (no bypass), every capacity")
        for name, line in _lines(runs, lambda r: label(r, prefetchers)).items():
            bound = is_bound(line[0])
            ax.plot([r["vram_bytes"] / GIB for r in line], [r["hit_rate"] for r in line], "k--" if bound else "-o",
                    markersize=3, label=name, linewidth=2 if bound else 1.5)
        ax.set(title=Path(trace).name, xlabel="VRAM for experts (GiB)", ylabel="VRAM hit rate", ylim=(0, 1.02))
        ax.legend(fontsize=8, ncol=2)
    return _png(plt, fig)


def time_split(best: Sequence[dict]) -> bytes:
    """Predicted time per token of the best policy at each capacity: compute and stall stacked; the links' busy
    time (which overlaps compute) as a line."""
    plt, fig, panels = _panels(best)
    for trace, ax, runs in panels:
        runs = sorted(runs, key=lambda r: r["vram_bytes"])
        x = list(range(len(runs)))
        per_token = [1e3 * r["time_per_token_s"] / max(r["compute_s"] + r["stall_s"], 1e-30) for r in runs]
        compute = [r["compute_s"] * k for r, k in zip(runs, per_token)]
        stall = [r["stall_s"] * k for r, k in zip(runs, per_token)]
        transfer = [r["transfer_s"] * k for r, k in zip(runs, per_token)]
        ax.bar(x, compute, label="compute", color="#4c72b0")
        ax.bar(x, stall, bottom=compute, label="stall (waiting for experts)", color="#dd8452")
        ax.plot(x, transfer, "k.-", label="links busy, NVMe and PCIe added (overlaps compute)")
        ax.set_xticks(x, [tick(r, len({q["prefetch"] for q in runs})) for r in runs], fontsize=7)
        ax.set(title=Path(trace).name, xlabel="VRAM for experts and best policy", ylabel="ms per token")
        ax.legend(fontsize=8)
    return _png(plt, fig)


def bytes_moved(best: Sequence[dict]) -> bytes:
    """Bytes moved per token over each link by the best policy at each capacity."""
    plt, fig, panels = _panels(best)
    several = len({r["prefetch"] for r in best}) > 1
    for trace, ax, runs in panels:
        for prefetch, line in _lines(runs, lambda r: r["prefetch"]).items():
            x = [r["vram_bytes"] / GIB for r in line]
            for key, name in (("bytes_nvme_to_ram", "NVMe -> RAM"), ("bytes_ram_to_vram", "RAM -> VRAM")):
                per_token = [r[key] / max(r["decode_tokens"] + r["prefill_tokens"], 1) / 1e6 for r in line]
                ax.plot(x, per_token, "-o", markersize=3, label=f"{name}, prefetch {prefetch}" if several else name)
        ax.set(title=Path(trace).name, xlabel="VRAM for experts (GiB)", ylabel="MB moved per token")
        ax.legend(fontsize=8)
    return _png(plt, fig)


def prefetch_quality(records: Sequence[dict]) -> bytes:
    """Prefetch accuracy (used / issued) and coverage (misses avoided) against VRAM, per policy and prefetcher."""
    plt, fig, panels = _panels(records)
    for trace, ax, runs in panels:
        for name, line in _lines(runs, lambda r: label(r, 2)).items():
            x = [r["vram_bytes"] / GIB for r in line]
            drawn = ax.plot(x, [r["prefetch_accuracy"] for r in line], "-o", markersize=3, label=f"{name}: accuracy")
            ax.plot(x, [r["prefetch_coverage"] for r in line], "--", color=drawn[0].get_color(),
                    label=f"{name}: coverage")
        ax.set(title=Path(trace).name, xlabel="VRAM for experts (GiB)", ylabel="fraction", ylim=(0, 1.02))
        ax.legend(fontsize=7, ncol=2)
    return _png(plt, fig)


def layer_heatmap(best: Sequence[dict]) -> bytes:
    """Hit rate per layer (columns) at each capacity (rows) for the best policy there."""
    plt, fig, panels = _panels(best)
    for trace, ax, runs in panels:
        runs = sorted(runs, key=lambda r: r["vram_bytes"])
        image = ax.imshow([r["layer_hit_rates"] for r in runs], aspect="auto", vmin=0, vmax=1, cmap="viridis",
                          origin="lower")
        ticks = [tick(r, len({q["prefetch"] for q in runs})).replace("\n", " ") for r in runs]
        ax.set_yticks(range(len(runs)), ticks, fontsize=7)
        ax.set(title=Path(trace).name, xlabel="MoE layer", ylabel="VRAM for experts, best policy")
        ax.grid(False)
        fig.colorbar(image, ax=ax, label="hit rate")
    return _png(plt, fig)


def measured_vs_predicted(measured: Sequence[dict]) -> bytes:
    """`moecache run` results: measured time per token against simulate's prediction (the diagonal is exact),
    and the error of each."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, PANEL_HEIGHT))
    predicted = [1e3 * r["time_per_token_s"] for r in measured]
    actual = [1e3 * r["measured_time_per_token_s"] for r in measured]
    names = [f"{r['policy']} {human_bytes(r['vram_bytes'])}" for r in measured]
    left.scatter(predicted, actual)
    top = max(predicted + actual) * 1.1
    left.plot([0, top], [0, top], "k--", linewidth=1, label="measured = predicted")
    left.set(xlabel="predicted ms per token (simulate)", ylabel="measured ms per token (run)", xlim=(0, top),
             ylim=(0, top))
    left.legend(fontsize=8)
    errors = [100 * (p - a) / a if a else 0.0 for p, a in zip(predicted, actual)]
    right.barh(range(len(errors)), errors, color="#4c72b0")
    right.set_yticks(range(len(errors)), names, fontsize=7)
    right.axvline(0, color="k", linewidth=1)
    right.set(xlabel="prediction error (% of measured)")
    return _png(plt, fig)


def routing_tradeoff(records: Sequence[dict]) -> bytes:
    """Memory-aware routing: the hit-rate gain of each bonus over the same run with the recorded routing, against
    the share of layer steps whose experts changed; one series per policy, one point per bonus and capacity."""
    plain = {(r["trace"], r["policy"], r["prefetch"], r["vram_bytes"]): r for r in records if not r["routing_bonus"]}
    rerouted = [r for r in records if r["routing_bonus"]]
    plt, fig, panels = _panels(rerouted)
    prefetchers = len({r["prefetch"] for r in rerouted})
    for trace, ax, runs in panels:
        for name, line in _lines(runs, lambda r: label(r, prefetchers)).items():
            base = [plain[(r["trace"], r["policy"], r["prefetch"], r["vram_bytes"])] for r in line]
            ax.scatter([100 * r["routing_changed_fraction"] for r in line],
                       [100 * (r["hit_rate"] - b["hit_rate"]) for r, b in zip(line, base)], label=name, s=18)
        for r in runs:
            ax.annotate(f"+{r['routing_bonus']:g}", (100 * r["routing_changed_fraction"],
                        100 * (r["hit_rate"] - plain[(r["trace"], r["policy"], r["prefetch"], r["vram_bytes"])]
                               ["hit_rate"])), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set(title=Path(trace).name, xlabel="layer steps whose experts changed (%)",
               ylabel="hit-rate gain (points)")
        ax.legend(fontsize=8)
    return _png(plt, fig)
