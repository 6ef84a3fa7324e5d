"""`compare`'s report: one self-contained HTML file (figures embedded, nothing fetched) and a Markdown twin
whose figures are PNG files beside it. Both are built in a hidden folder and moved into place at the end,
so a failure leaves the previous report, never half of a new one."""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from pathlib import Path

from moecache_cli import figures

HTML_NAME, MD_NAME, FIGURES = "report.html", "report.md", "figures"
STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
         "table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
         "text-align:right}th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-size:.9rem}")
COLUMNS = ("trace", "VRAM", "prefetch", "best policy", "hit rate", "tokens/s", "gap to Belady (points)",
           "gain over LRU (points)")


def best_records(records: list[dict], summary: list[dict]) -> list[dict]:
    """The record of the best policy for each (trace, VRAM, prefetcher) of the summary."""
    index = {(r["trace"], r["vram_bytes"], r["prefetch"], r["policy"]): r for r in records
             if not figures.is_bound(r) and not r["routing_bonus"]}
    return [index[(s["trace"], s["vram_bytes"], s["prefetch"], s["policy"])] for s in summary]


def sections(records: list[dict], summary: list[dict], measured: list[dict],
             curves: list[dict]) -> list[tuple[str, str, str, bytes]]:
    """(file stem, title, caption, PNG) of every figure the sweep (and the given `run` results) support."""
    best = best_records(records, summary)
    plain = [r for r in records if not r["routing_bonus"]]
    out = [
        ("hit-rate", "Hit rate against VRAM capacity",
         "VRAM hit rate of each policy; Belady with bypass (dashed) is the bound no policy can beat."
         + (" Thin grey lines: LRU and Belady (without bypass) at every capacity, from one pass over the trace."
            if curves else ""), figures.hit_rate(plain, curves)),
        ("time-per-token", "Predicted time per token",
         "The best policy at each capacity: compute and stalls stacked, the links' busy time as a line.",
         figures.time_split(best)),
        ("bytes-moved", "Bytes moved per link", "Per token, by the best policy at each capacity.",
         figures.bytes_moved(best)),
    ]
    prefetched = [r for r in plain if r["prefetch"] != "none" and not figures.is_bound(r)]
    if prefetched:
        out.append(("prefetch", "Prefetch accuracy and coverage",
                    "Accuracy: prefetched experts used before eviction; coverage: the share of would-be misses that "
                    "prefetching served.", figures.prefetch_quality(prefetched)))
    out.append(("layer-hit-rate", "Hit rate per layer",
                "The best policy at each capacity, layer by layer.", figures.layer_heatmap(best)))
    if len(plain) < len(records):
        out.append(("routing", "Memory-aware routing trade-off",
                    "Each bonus added to the router logits of VRAM-resident experts: the hit rate it gains over the "
                    "recorded routing, against how often it changed a layer step's experts (the model's quality "
                    "is what that costs).", figures.routing_tradeoff(records)))
    if measured:
        out.append(("measured", "Measured against predicted", measured_caption(measured),
                    figures.measured_vs_predicted(measured)))
    return out


def measured_caption(measured: list[dict]) -> str:
    """Each `run` result in words: predicted and measured time per token, the error, and the hit rate (the
    counters of `run` equal simulate's by construction)."""
    parts = []
    for r in measured:
        predicted, actual = r["time_per_token_s"] * 1e3, r["measured_time_per_token_s"] * 1e3
        error = (predicted - actual) / actual if actual else 0.0
        parts.append(f"{Path(r['trace']).name}, {r['policy']} at {figures.human_bytes(r['vram_bytes'])} on "
                     f"{r['measured_device']}: predicted {predicted:.3f} ms per token, measured {actual:.3f} ms "
                     f"({error:+.1%}), hit rate {r['hit_rate']:.3f}")
    return "Measured by `moecache run`: " + "; ".join(parts) + "."


def summary_rows(summary: list[dict]) -> list[list[str]]:
    def points(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:+.1f}"

    return [[Path(s["trace"]).name, figures.human_bytes(s["vram_bytes"]), s["prefetch"], s["policy"],
             f"{s['hit_rate']:.3f}", f"{s['tokens_per_s']:,.2f}", points(s["gap_to_belady"]),
             points(s["gain_over_lru"])] for s in summary]


def render_html(title: str, summary: list[dict], parts: list[tuple[str, str, str, bytes]], runs: int) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                    for row in summary_rows(summary))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{runs} runs. Which policy to use at which VRAM budget, what it "
            "costs in tokens/s, and how far it is from the bound.</p>",
            "<h2 id='summary'>Best policy per budget</h2>", f"<table><tr>{head}</tr>{cells}</table>"]
    for stem, heading, caption, png in parts:
        data = base64.b64encode(png).decode()
        body.append(f"<h2 id='{stem}'>{html.escape(heading)}</h2><figure><img alt='{html.escape(heading)}' "
                    f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def render_markdown(title: str, summary: list[dict], parts: list[tuple[str, str, str, bytes]], runs: int) -> str:
    lines = [f"# {title}", "", f"{runs} runs. Which policy to use at which VRAM budget, what it costs in tokens/s, "
             "and how far it is from the bound.", "", "## Best policy per budget", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(summary)]
    for stem, heading, caption, _ in parts:
        lines += ["", f"## {heading}", "", f"![{heading}]({FIGURES}/{stem}.png)", "", caption]
    return "\n".join(lines) + "\n"


def write_report(folder: Path, records: list[dict], summary: list[dict], title: str,
                 measured: list[dict] | None = None, curves: list[dict] | None = None) -> Path:
    """report.html, report.md and figures/ in `folder`; returns the HTML's path."""
    parts = sections(records, summary, measured or [], curves or [])
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        (staging / FIGURES).mkdir()
        for stem, _, _, png in parts:
            (staging / FIGURES / f"{stem}.png").write_bytes(png)
        (staging / HTML_NAME).write_text(render_html(title, summary, parts, len(records)))
        (staging / MD_NAME).write_text(render_markdown(title, summary, parts, len(records)))
        if (folder / FIGURES).exists():
            shutil.rmtree(folder / FIGURES)
        for name in (FIGURES, MD_NAME, HTML_NAME):  # the HTML last: it alone is complete without the others
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / HTML_NAME
