"""The simulator: replay routing traces through expert-placement policies over VRAM, RAM and NVMe.

Policies (`simulator.policies`) only decide; the cache core (`simulator.cache`, and its numba twin
`simulator.kernel`) owns the loop and emits events; `simulator.accounting` turns events into the
metrics and predicted time of DESIGN.md sections 6 and 7. Never imports typer or rich.
"""
