"""The `moecache` command line: a thin Typer layer over the traces, simulator and engine libraries."""
