"""All terminal output: Rich tables and progress bars for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=str))


def key_values(title: str, rows: Sequence[tuple[str, object]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, fmt(value))
    console.print(table)


def grid(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], compact: bool = False,
         whole: bool = False) -> None:
    """A table with a left-aligned first column; `compact` uses light borders to fit 80 columns; `whole`
    prints it at its natural width even where the terminal is narrower (nothing cut). Where it is too wide,
    the headers wrap at their spaces first (each column as wide as its widest value or header word, light
    borders, one space between columns and none at the edges), and only then does Rich cut."""
    cells = [[fmt(v) for v in row] for row in rows]
    table = _grid_table(title, columns, cells, compact)
    natural = Measurement.get(console, console.options.update_width(1 << 16), table).maximum
    if natural > console.width and whole:
        Console(width=natural).print(table)
        return
    if natural > console.width:
        widths = [max([len(word) for word in name.split()] + [len(row[i]) for row in cells])
                  for i, name in enumerate(columns)]
        table = _grid_table(title, columns, cells, compact, widths)
    console.print(table)


def _grid_table(title: str, columns: Sequence[str], cells: list[list[str]], compact: bool,
                widths: Sequence[int] | None = None) -> Table:
    narrow = widths is not None
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if compact or narrow else box.HEAVY_HEAD,
                  pad_edge=not compact and not narrow, show_edge=not narrow, collapse_padding=narrow)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", width=widths[i] if narrow else None)
    for row in cells:
        table.add_row(*row)
    return table


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@contextmanager
def progress_bar(label: str, unit: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr with a rate column; yields an `update(done, total)` callback.
    The bar appears at the first update, so an error raised before any work prints alone."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"), TextColumn("[cyan]{task.fields[rate]}"), TimeElapsedColumn(),
    )
    bar = Progress(*columns, console=err_console, transient=False)
    task = bar.add_task(label, total=None, counts="", rate="")

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if not bar.live.is_started:
            bar.start()
        speed = bar.tasks[0].speed
        bar.update(task, completed=done, total=total, counts=f"{done:,}/{total:,} {unit}",
                   rate=f"{speed:,.1f} {unit}/s" if speed else "")

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


COMPILING = "compiling kernels (a policy's first run on this machine: 15-50 s)"


@contextmanager
def compile_notice(enabled: bool = True) -> Iterator[None]:
    """One line on stderr when numba starts compiling (it announces a compile, not a load from its disk
    cache), so that a first run's silent tens of seconds say why."""
    from simulator.jit import on_first_compile

    with on_first_compile(say_compiling if enabled else None):
        yield


def say_compiling() -> None:
    err_console.print(f"moecache: {COMPILING}", style="dim")


@contextmanager
def live_run(title: str, enabled: bool = True) -> Iterator[Callable[[object], None]]:
    """A live table for `moecache run`, refreshed from the engine's snapshots (`engine.replay.Snapshot`);
    yields the `update(snapshot)` callback. It appears at the first snapshot."""
    live = Live(console=err_console, refresh_per_second=8, transient=False)

    def update(snap: object) -> None:
        if not enabled:
            return
        if not live.is_started:
            live.start()
        live.update(_run_view(title, snap))

    try:
        yield update
    finally:
        if live.is_started:
            live.stop()


def _run_view(title: str, snap) -> Group:
    c, m = snap.counters, snap.measured
    done = f"{snap.rows_done:,}/{snap.rows_total:,} rows, {snap.steps:,} steps, {snap.elapsed_s:.1f} s"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(justify="right")
    for name, resident, capacity in snap.tiers:
        if capacity:
            table.add_row(name, f"{resident:,} / {capacity:,} experts", f"{resident / capacity:.0%} full")
    table.add_row("hit rate", f"{c['hit_rate']:.4f}", f"{c['accesses']:,} accesses")
    table.add_row("NVMe -> RAM", human_bytes(m["bytes_nvme"]), f"{m['nvme_gbps']:.2f} GB/s")
    table.add_row("RAM -> VRAM", human_bytes(m["bytes_pcie"]), f"{m['pcie_gbps']:.2f} GB/s")
    table.add_row("demand stalls", f"p50 {m['stall_p50_ms']:.3f} ms", f"p99 {m['stall_p99_ms']:.3f} ms")
    table.add_row("prefetch", f"accuracy {c['prefetch_accuracy']:.3f}", f"coverage {c['prefetch_coverage']:.3f}")
    table.add_row("speed", f"{m['steps_per_s']:,.0f} steps/s", f"{m['time_per_token_s'] * 1e3:.2f} ms/token")
    header = Table.grid(padding=(0, 2))
    header.add_row(ProgressBar(total=max(snap.rows_total, 1), completed=snap.rows_done, width=40), done)
    return Group(header, table)
