"""Replay one trace through one configuration: resolve capacities, stream steps a batch of rows at a
time, drive the cache (numba kernel, or the plain reference), account events, summarise.

Three threads share the work: one reads the next batch of rows, cuts it into steps and plans its
prefetches (`steps.read_ahead`), the caller's replays this one, and one accounts the events of the
previous batch (`Accountant`); the numba kernels release the GIL. Belady reads the future: a first
pass writes every access's next use to a file (`simulator.future`), so even Belady's memory does not
grow with the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future as Pending, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator import accounting as ac
from simulator.config import Resolved, SimConfig, resolve
from simulator.drivers import DemandDriver, KernelDriver, ReferenceDriver, tier_views
from simulator.future import Future, access_stream, next_uses
from simulator.hardware import Hardware, check_dtype, expert_sizes, params_per_expert
from simulator.metrics import RunResult, summarize
from simulator.mrc import belady_curve, lru_curve
from simulator.policies import TierView, policy_class
from simulator.prefetchers import Prefetcher, make_prefetcher, plan
from simulator.steps import Steps, iter_steps, read_ahead
from traces.errors import MoecacheError
from traces.reader import Trace, open_trace

__all__ = ["Prepared", "SimConfig", "miss_ratio_curves", "prepare", "simulate"]


def rates_for(hw: Hardware, sizes: np.ndarray, dtype: str, top_k: int) -> ac.Rates:
    params = params_per_expert(sizes, dtype)
    return ac.Rates(sizes=sizes, pcie_s=hw.pcie_seconds(sizes), nvme_s=hw.nvme_seconds(sizes),
                    gpu_s_per_token=2.0 * params / hw.gpu_flops, gpu_floor_s=sizes / hw.gpu_memory_bandwidth,
                    cpu_s_per_token=2.0 * params / hw.cpu_flops, cpu_floor_s=sizes / hw.cpu_memory_bandwidth,
                    gpu_fixed_s=np.full(len(sizes), hw.gpu_expert_overhead_s),
                    cpu_fixed_s=np.full(len(sizes), hw.cpu_expert_overhead_s), top_k=top_k)


def check(config: SimConfig, trace: Trace) -> None:
    """Combinations that cannot work, each one clear line."""
    cls = policy_class(config.policy)
    if cls.needs_future and config.routing_bonus is not None:
        raise MoecacheError(f"policy '{config.policy}' reads the recorded future, which --routing-bonus changes; "
                            "run them separately")
    if config.routing_bonus is not None and not trace.has_logits:
        raise MoecacheError(f"{trace.path}: --routing-bonus re-routes tokens from router logits, and this trace has "
                            "none; record it with --logits")
    if config.prefetch == "lookahead" and not trace.has_lookahead:
        raise MoecacheError(f"{trace.path}: --prefetch lookahead needs the lookahead column; record with --lookahead")
    if config.engine not in ("fast", "kernel", "reference"):
        raise MoecacheError(f"unknown engine '{config.engine}'; use fast, kernel or reference")
    check_dtype(config.hardware, config.precision or trace.meta.dtype, str(trace.path))


@dataclass
class Prepared:
    """One run's inputs resolved: checked configuration, capacities, policy views, prefetcher, cost rates and
    the empty tally. Shared by `simulate` and the engine's replay, so both count the same way."""

    trace: Trace
    params: object
    sizes: np.ndarray
    resolved: Resolved
    future: Future | None
    live_future: np.ndarray | None
    vram: TierView
    ram: TierView | None
    prefetcher: Prefetcher
    rates: ac.Rates
    tally: ac.Tally

    def next_uses(self, acc0: int, steps: Steps) -> np.ndarray | None:
        """Next-use index of each access of `steps`, which start at access `acc0` (Belady only)."""
        return None if self.future is None else self.future.read(acc0, steps.accesses)

    def account(self, events: tuple[np.ndarray, np.ndarray, np.ndarray], step0: int, steps: Steps, lo: int,
                hi: int) -> None:
        """Add the events of steps lo..hi of a chunk that starts at global step `step0`."""
        count = np.diff(steps.ptr[lo:hi + 1])
        ac.account(self.tally, self.rates, events, step0 + lo, steps.layer[lo:hi], steps.tokens[lo:hi],
                   steps.decode[lo:hi], steps.new_token[lo:hi], count, self.trace.meta.num_experts)

    def summary(self, config: SimConfig, routing: np.ndarray) -> RunResult:
        meta = self.trace.meta
        return summarize(self.tally, routing, trace=str(self.trace.path), policy=config.policy,
                         prefetch=config.prefetch, vram_bytes=self.resolved.vram_bytes,
                         ram_bytes=self.resolved.ram_bytes, model=meta.model, preset=config.hardware.name,
                         policy_params=repr(self.params), mode=self.resolved.mode,
                         routing_bonus=config.routing_bonus or 0.0)

    def close(self) -> None:
        if self.future is not None:
            self.future.close()


def prepare(trace: Trace, config: SimConfig) -> Prepared:
    """Check `config` against the trace and build everything one run needs (close() it after)."""
    meta = trace.meta
    check(config, trace)
    cls = policy_class(config.policy)
    params = config.params if config.params is not None else cls.Params().validate()
    sizes = expert_sizes(meta, config.precision)
    resolved = resolve(config, trace, sizes)
    future = Future(trace) if cls.needs_future else None
    try:
        live_future = future.first_use.copy() if future is not None else None
        vram, ram = tier_views(trace, sizes, config.hardware, resolved, live_future)
        limit = config.prefetch_limit or meta.top_k
        prefetcher = make_prefetcher(config.prefetch, meta.num_layers, meta.num_experts, limit)
    except BaseException:
        if future is not None:
            future.close()
        raise
    return Prepared(trace, params, sizes, resolved, future, live_future, vram, ram, prefetcher,
                    rates_for(config.hardware, sizes, meta.dtype, meta.top_k),
                    ac.Tally.start(meta.num_layers, len(sizes)))


class Accountant:
    """Accounts each batch of events on a thread of its own while the driver replays the next batch (the
    accounting kernel releases the GIL); batches stay in order, one waits at most, errors surface here."""

    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="moecache-accounting")
        self.pending: Pending | None = None

    def add(self, events: tuple[np.ndarray, np.ndarray, np.ndarray], step0: int, steps: Steps, lo: int,
            hi: int) -> None:
        self.wait()
        self.pending = self.pool.submit(self.prep.account, events, step0, steps, lo, hi)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def __enter__(self) -> Accountant:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _planned_steps(trace: Trace, config: SimConfig,
                   prefetcher: Prefetcher) -> Iterator[tuple[Steps, tuple[np.ndarray, np.ndarray]]]:
    """Each chunk of steps with the prefetcher's plan for it (the plan learns from the recorded routing only,
    so it can run ahead of the replay, on the read-ahead thread)."""
    for steps in iter_steps(trace, logits=config.routing_bonus is not None, lookahead=config.prefetch == "lookahead"):
        yield steps, plan(prefetcher, steps, fast=config.engine != "reference")


def simulate(path: Path | str, config: SimConfig, progress: Callable[[int, int], None] | None = None,
             on_events: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> RunResult:
    """Replay the trace at `path` under `config`; `progress(rows_done, rows_total)` after each batch of rows,
    `on_events(steps, kinds, objects)` with every batch of events (the tests compare implementations)."""
    trace = open_trace(path)
    prep = prepare(trace, config)
    try:
        if config.engine == "reference":
            driver_cls = ReferenceDriver
        elif config.engine == "fast" and DemandDriver.handles(config, prep.params, prep.resolved):
            driver_cls = DemandDriver
        else:
            driver_cls = KernelDriver
        driver = driver_cls(config, prep.params, prep.vram, prep.ram, prep.resolved, prep.live_future)
        step0 = acc0 = rows = 0
        ahead = read_ahead(_planned_steps(trace, config, prep.prefetcher))
        with Accountant(prep) as accountant, closing(ahead):
            for steps, hints in ahead:

                def sink(events, lo, hi, steps=steps, step0=step0):
                    if on_events is not None:
                        on_events(*(a.copy() for a in events))
                    accountant.add(events, step0, steps, lo, hi)

                driver.run(steps, prep.next_uses(acc0, steps), hints, step0, sink)
                step0 += len(steps)
                acc0 += steps.accesses
                rows += len(steps.rows)
                if progress is not None:
                    progress(rows, trace.num_rows)
    finally:
        prep.close()
    return prep.summary(config, driver.routing)


def miss_ratio_curves(trace: Trace) -> dict[str, object]:
    """LRU and Belady miss ratios of plain demand caching at every capacity (in experts), one pass each."""
    objects = access_stream(trace)
    n = trace.meta.num_layers * trace.meta.num_experts
    following, _ = next_uses(objects, n)
    lru, belady = lru_curve(objects, n), belady_curve(objects, following, n)
    return {"trace": str(trace.path), "accesses": len(objects), "compulsory": lru.compulsory,
            "capacity": list(range(1, n + 1)), "lru": lru.ratios().tolist(), "belady": belady.ratios().tolist()}
