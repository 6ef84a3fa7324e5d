"""Routing traces: the Parquet format, recording from real models, importers, synthesis, statistics.

This package is a library: it never imports typer or rich, so notebooks and the simulator use it
directly.
"""
