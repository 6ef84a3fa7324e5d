"""`moecache run` in replay mode: drive a trace through real weights, with `simulate`'s planner.

The run is prepared exactly as `simulate` prepares it (`simulator.replay.prepare`: the same checks,
capacities, policies, prefetcher and cost rates), the planner is the reference cache model, and
its events are accounted by the same code, so the counters equal `simulate`'s. The executor adds
what really happened: each event carried out on real bytes, each step's experts computed from the
slots, and the time of every step measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.device import resolve_device
from engine.executor import EngineOptions, Executor, Measured
from engine.layout import ExpertLayout, open_layout
from simulator import accounting as ac
from simulator import events as ev
from simulator.config import SimConfig
from simulator.drivers import ReferenceDriver
from simulator.metrics import RunResult
from simulator.prefetchers import plan
from simulator.replay import Prepared, prepare
from simulator.steps import iter_steps
from traces.errors import MoecacheError
from traces.reader import Trace, open_trace

REFRESH_S = 0.2


@dataclass
class Snapshot:
    """The state of a run for the live display."""

    rows_done: int
    rows_total: int
    steps: int
    elapsed_s: float
    tiers: list[tuple[str, int, int]]  # (name, resident experts, capacity in experts)
    counters: dict[str, float]
    measured: dict[str, float]


@dataclass
class ReplayResult:
    result: RunResult
    measured: dict[str, object]
    interrupted: bool = False
    executor: Executor | None = field(default=None, repr=False)

    def record(self) -> dict[str, object]:
        """One flat record: DESIGN.md section 7's names (as `simulate`) plus `measured_*`."""
        return {**self.result.to_dict(), **self.measured}


def check_match(layout: ExpertLayout, trace: Trace) -> None:
    """The weights must be the model the trace was recorded from: layers, experts and expert size."""
    meta, where = trace.meta, f"{layout.folder} and {trace.path}"
    if layout.num_layers != meta.num_layers:
        raise MoecacheError(f"{where} do not match: the weights have {layout.num_layers} MoE layers, the trace "
                            f"{meta.num_layers}")
    if layout.num_experts != meta.num_experts:
        raise MoecacheError(f"{where} do not match: the weights have {layout.num_experts} experts per layer, the "
                            f"trace {meta.num_experts}")
    for layer in range(meta.num_layers):
        if meta.expert_bytes(layer) != layout.format.expert_bytes:
            raise MoecacheError(f"{where} do not match: an expert of the weights has {layout.format.expert_bytes:,} "
                                f"bytes, the trace's layer {layer} {meta.expert_bytes(layer):,}")


def capacity_slots(capacity: np.ndarray, sizes: np.ndarray, num_experts: int, per_layer: bool) -> int:
    """Slots a tier needs so that whatever the planner fits in `capacity` (bytes per partition) fits; never more
    than there are experts, so a budget larger than the model allocates only the model."""
    if per_layer:
        return int(sum(min(int(c) // int(sizes[p * num_experts:(p + 1) * num_experts].min()), num_experts)
                       for p, c in enumerate(capacity)))
    return min(int(capacity[0]) // int(sizes.min()), len(sizes))


def replay(trace_path: Path, weights: Path, config: SimConfig, options: EngineOptions,
           on_update: Callable[[Snapshot], None] | None = None) -> ReplayResult:
    """Run the trace over the checkpoint; Ctrl-C stops at the current step and returns what was done."""
    trace = open_trace(trace_path)
    layout = open_layout(weights)
    check_match(layout, trace)
    if config.precision is not None and config.precision != trace.meta.dtype:
        raise MoecacheError("run moves the checkpoint's real bytes; --precision applies to simulate only")
    if config.routing_bonus is not None:
        raise MoecacheError("run replays the recorded routing; --routing-bonus applies to simulate only")
    prep = prepare(trace, config)
    try:
        return _replay(trace, layout, prep, config, options, on_update)
    finally:
        prep.close()


def _replay(trace: Trace, layout: ExpertLayout, prep: Prepared, config: SimConfig, options: EngineOptions,
            on_update: Callable[[Snapshot], None] | None) -> ReplayResult:
    meta = trace.meta
    cache = prep.resolved.cache
    driver = ReferenceDriver(config, prep.params, prep.vram, prep.ram, prep.resolved, prep.live_future)
    planner = driver.cache
    vram_slots = capacity_slots(cache.vram, prep.sizes, meta.num_experts, cache.per_layer)
    ram_slots = None if cache.ram is None else capacity_slots(cache.ram, prep.sizes, meta.num_experts,
                                                             cache.per_layer)
    executor = make_executor(layout, planner, vram_slots, ram_slots, meta.top_k, options)
    planner.listener = executor.on_event
    start = time.perf_counter()
    last_update = start
    step0 = acc0 = rows = 0
    interrupted = False
    try:
        for steps in iter_steps(trace, lookahead=config.prefetch == "lookahead", weights=True):
            hint_ptr, hints = plan(prep.prefetcher, steps)
            nexts = prep.next_uses(acc0, steps)
            experts, weights = steps.rows.experts, steps.rows.weights
            for s in range(len(steps)):
                r0, r1, a0, a1 = steps.row_ptr[s], steps.row_ptr[s + 1], steps.ptr[s], steps.ptr[s + 1]
                layer = int(steps.layer[s])
                executor.begin_step(step0 + s, experts[r0:r1], weights[r0:r1], layer)
                events = planner.step(step0 + s, layer, [int(o) for o in steps.objects[a0:a1]],
                                      None if nexts is None else nexts[a0:a1], hints[hint_ptr[s]:hint_ptr[s + 1]])
                executor.finish_step(bool(steps.decode[s]))
                arr = np.array(events, np.int64).reshape(-1, 3)
                prep.account((arr[:, 0], arr[:, 1].astype(np.int8), arr[:, 2].astype(np.int32)), step0, steps, s,
                             s + 1)
                now = time.perf_counter()
                if on_update is not None and now - last_update >= REFRESH_S:
                    last_update = now
                    executor.resolve_times()
                    on_update(snapshot(executor, prep, rows + int(r1), trace.num_rows, step0 + s + 1, now - start))
            step0 += len(steps)
            acc0 += steps.accesses
            rows += len(steps.rows)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        executor.synchronize()
        executor.close()
    wall = time.perf_counter() - start
    result = prep.summary(config, driver.routing)
    measured = summarize_measured(executor, result, wall)
    if on_update is not None:
        on_update(snapshot(executor, prep, rows, trace.num_rows, step0, wall))
    return ReplayResult(result, measured, interrupted, executor)


def make_executor(layout: ExpertLayout, planner, vram_slots: int, ram_slots: int | None, top_k: int,
                  options: EngineOptions) -> Executor:
    """The executor, with CUDA's out-of-memory turned into one clear line."""
    import torch

    resolve_device(options.device)  # a device this machine has
    try:
        return Executor(layout, planner, vram_slots, ram_slots, top_k, options)
    except torch.OutOfMemoryError:
        need = (vram_slots + 1 + options.ring) * layout.format.slot_bytes
        raise MoecacheError(f"CUDA out of memory allocating the VRAM tier ({need / 2**30:.2f} GiB for "
                            f"{vram_slots} expert slots); lower --vram or --vram-experts") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc) and "out of memory" not in str(exc):
            raise
        need = ((ram_slots or 0) + 3 + options.ring) * layout.format.slot_bytes
        raise MoecacheError(f"cannot allocate the RAM tier ({need / 2**30:.2f} GiB of host memory for "
                            f"{ram_slots or 0} expert slots); lower --ram or --ram-experts") from None


def _quantile_ms(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) * 1e3 if values else 0.0


def summarize_measured(executor: Executor, result: RunResult, wall: float) -> dict[str, object]:
    """The measured_* fields: times from the executor's clocks, bytes it really moved."""
    m: Measured = executor.measured
    step = np.array(m.step_s)
    decode = np.array(m.decode, bool)
    stall = np.array(m.stall_s)
    missed = np.array(m.demand_miss, bool)
    decode_s, prefill_s = float(step[decode].sum()), float(step[~decode].sum())
    if result.decode_tokens:
        per_token = decode_s / result.decode_tokens
    else:
        per_token = prefill_s / result.prefill_tokens if result.prefill_tokens else 0.0
    stalls = stall[missed].tolist()
    return {
        "measured_device": executor.device.type,
        "measured_total_s": wall,
        "measured_steps": len(step),
        "measured_steps_per_s": len(step) / wall if wall else 0.0,
        "measured_time_per_token_s": per_token,
        "measured_tokens_per_s": 1.0 / per_token if per_token else 0.0,
        "measured_decode_time_s": decode_s,
        "measured_prefill_time_s": prefill_s,
        "measured_stall_s": float(stall.sum()),
        "measured_compute_s": float((step - stall).clip(min=0).sum()),
        "measured_stall_p50_ms": _quantile_ms(stalls, 0.5),
        "measured_stall_p99_ms": _quantile_ms(stalls, 0.99),
        "measured_bytes_nvme_to_ram": m.bytes_nvme,
        "measured_bytes_ram_to_vram": m.bytes_h2d,
        "measured_bytes_vram_to_ram": m.bytes_d2h,
        "measured_nvme_gbps": m.bytes_nvme / wall / 1e9 if wall else 0.0,
        "measured_pcie_gbps": m.bytes_h2d / wall / 1e9 if wall else 0.0,
        "measured_nvme_read_gbps": executor.reader.bytes_read / executor.reader.busy_s / 1e9
        if executor.reader.busy_s else 0.0,
        "measured_vram_arena_bytes": executor.vram.nbytes,
        "measured_ram_arena_bytes": executor.ram.nbytes,
        "measured_o_direct": executor.reader.direct,
    }


def snapshot(executor: Executor, prep: Prepared, rows_done: int, rows_total: int, steps: int,
             elapsed: float) -> Snapshot:
    k, c = prep.tally.kinds, prep.tally.counters
    accesses = int(c[ac.C_ACCESSES])
    misses = accesses - int(k[ev.HIT])
    issued, used = int(c[ac.C_PF_ISSUED]), int(c[ac.C_PF_USED])
    m = executor.measured
    done = [i for i in range(len(m.step_s)) if m.step_s[i] > 0]
    decode_time = sum(m.step_s[i] for i in done if m.decode[i])
    decode_steps = sum(1 for i in done if m.decode[i])
    stalls = [m.stall_s[i] for i in done if m.demand_miss[i]]
    layers = prep.trace.meta.num_layers
    return Snapshot(
        rows_done=rows_done, rows_total=rows_total, steps=steps, elapsed_s=elapsed,
        tiers=[("VRAM" if executor.cuda else "VRAM (host memory)", len(executor.vram.slot_of), executor.vram.capacity),
               ("RAM", len(executor.ram.slot_of), executor.ram.capacity)],
        counters={"hit_rate": int(k[ev.HIT]) / accesses if accesses else 0.0, "accesses": accesses,
                  "misses": misses, "prefetch_accuracy": used / issued if issued else 0.0,
                  "prefetch_coverage": used / (used + misses) if used + misses else 0.0},
        measured={"bytes_nvme": m.bytes_nvme, "bytes_pcie": m.bytes_h2d,
                  "nvme_gbps": m.bytes_nvme / elapsed / 1e9 if elapsed else 0.0,
                  "pcie_gbps": m.bytes_h2d / elapsed / 1e9 if elapsed else 0.0,
                  "stall_p50_ms": _quantile_ms(stalls, 0.5), "stall_p99_ms": _quantile_ms(stalls, 0.99),
                  "steps_per_s": steps / elapsed if elapsed else 0.0,
                  "time_per_token_s": decode_time / decode_steps * layers if decode_steps else 0.0},
    )
