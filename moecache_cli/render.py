"""All terminal output: Rich tables and progress bars for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
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


def grid(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)


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
