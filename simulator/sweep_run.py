"""A sweep's runs on a pool of processes, or on a Ray cluster, each result handed back as it finishes.

Each run is one `simulate` of one trace under one configuration, identified by a key that names
everything its result depends on (the trace file by path, size and modification time, and the
configuration), so that an interrupted sweep can skip the runs whose results it kept (`--resume`).
Workers are spawned processes (numba and pyarrow start threads, which forked children must not
inherit); each compiles or loads from the on-disk cache the kernels its policies need, and tells this
process when it starts compiling, so that a first sweep on a machine can say why it is slow. With Ray (an
optional extra) the same runs are Ray tasks; the cluster's nodes must see the traces at the same paths
and have moecache installed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from pathlib import Path

from simulator.config import SimConfig

RUN_KEY = "run_key"
POLL_S = 0.25  # how often the parent looks for a worker's word that it compiles, while runs are under way


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a trace, a configuration, and the key its result is stored under."""

    trace: Path
    config: SimConfig
    key: str


def run_key(trace: Path, config: SimConfig) -> str:
    """A stable id of what the result depends on: the trace file (path, size, mtime) and the configuration."""
    stat = trace.stat()
    text = f"{trace.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def make_runs(trace: Path, configs: Iterable[SimConfig]) -> list[Run]:
    return [Run(trace, config, run_key(trace, config)) for config in configs]


def run_one(run: Run) -> dict[str, object]:
    """The run's flat record (DESIGN.md section 7's names) and its key."""
    from simulator.replay import simulate

    return {**simulate(run.trace, run.config).to_dict(), RUN_KEY: run.key}


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def execute(runs: list[Run], workers: int, on_result: Callable[[dict[str, object]], None],
            on_compile: Callable[[], None] | None = None) -> None:
    """Run every run, `workers` at a time, calling `on_result(record)` in this process as each finishes, and
    `on_compile()` once when a run, here or in a worker, first starts compiling kernels. An error or Ctrl-C
    cancels the runs not started and stops those under way; the results already handed over stay with the
    caller."""
    if workers <= 1 or len(runs) <= 1:
        from simulator.jit import on_first_compile

        with on_first_compile(on_compile):
            for run in runs:
                on_result(run_one(run))
        return
    context = multiprocessing.get_context("spawn")
    compiling = context.SimpleQueue()
    pool = ProcessPoolExecutor(min(workers, len(runs)), mp_context=context, initializer=_report_compiles,
                               initargs=(compiling,))
    try:
        pending = {pool.submit(run_one, run) for run in runs}
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            if on_compile is not None and not compiling.empty():
                on_compile()
                on_compile = None
            for future in finished:
                on_result(future.result())
    except BaseException:
        running = list((getattr(pool, "_processes", None) or {}).values())  # the executor has no public handle
        pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()
        raise
    pool.shutdown()


def _report_compiles(compiling: SimpleQueue) -> None:
    """A worker's initializer: put its pid on `compiling` when numba first starts compiling in it."""
    from numba.core import event

    from simulator.jit import COMPILE_EVENT, FirstCompile

    event.register(COMPILE_EVENT, FirstCompile(lambda: compiling.put(os.getpid())))


def execute_ray(runs: list[Run], address: str, on_result: Callable[[dict[str, object]], None]) -> None:
    """`execute` on a Ray cluster: `address` is a cluster's address, `auto` (the running one) or `local` (start
    one on this machine). An error or Ctrl-C cancels the tasks not finished."""
    import ray

    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False)
    task = ray.remote(run_one)
    pending = [task.remote(run) for run in runs]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            try:
                record = ray.get(finished[0])
            except ray.exceptions.RayTaskError as exc:  # the run's own error, as a local run would raise it
                raise exc.cause if isinstance(exc.cause, Exception) else exc from None
            on_result(record)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
