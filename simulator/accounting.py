"""Events to counters, bytes and predicted time: one pass, shared by both replay implementations.

Time advances step by step. A step's demand transfers are queued on their links when the step
starts (NVMe then PCIe for an NVMe miss), its prefetches behind them; a copy from RAM starts no
earlier than the NVMe read that brought the expert into RAM (a read-ahead still in flight); the GPU computes once every
needed expert has arrived (a prefetch still in flight delays it too), and the wait is the step's
stall. In cpu-compute mode the CPU computes its experts from RAM in parallel with the GPU. Links
are FIFO queues that stay busy across steps, so prefetches overlap the compute of later steps.

Legend: S steps in a chunk, n objects, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import events as ev
from simulator.jit import njit

# counters
(C_ACCESSES, C_COMPULSORY, C_NVME_BYTES, C_PCIE_BYTES, C_DOWN_BYTES, C_PF_ISSUED, C_PF_USED, C_PF_WASTED,
 C_DECODE_TOKENS, C_PREFILL_TOKENS, C_STEPS, C_STALLED_STEPS) = range(12)
N_COUNTERS = 12
# clocks and time totals
(T_NOW, T_NVME_FREE, T_PCIE_FREE, T_DOWN_FREE, T_COMPUTE, T_STALL, T_TRANSFER, T_DECODE, T_PREFILL) = range(9)
N_TIMES = 9


@dataclass
class Rates:
    """Per-object transfer and compute costs from the hardware preset (see simulator.hardware)."""

    sizes: np.ndarray  # (n,) int64 bytes
    pcie_s: np.ndarray  # (n,) float64 seconds over PCIe
    nvme_s: np.ndarray  # (n,) float64 seconds from NVMe
    gpu_s_per_token: np.ndarray  # (n,) float64 FLOP time per token on the GPU
    gpu_floor_s: np.ndarray  # (n,) float64 time to stream the weights once on the GPU
    cpu_s_per_token: np.ndarray  # (n,) float64
    cpu_floor_s: np.ndarray  # (n,) float64
    gpu_fixed_s: np.ndarray  # (n,) float64 fixed cost per expert computed on the GPU (launches)
    cpu_fixed_s: np.ndarray  # (n,) float64
    top_k: int


@dataclass
class Tally:
    """Running totals over all chunks of one run."""

    kinds: np.ndarray  # (len(ev.NAMES),) int64 events of each kind
    counters: np.ndarray  # (N_COUNTERS,) int64
    times: np.ndarray  # (N_TIMES,) float64
    layer_accesses: np.ndarray  # (L,) int64
    layer_hits: np.ndarray  # (L,) int64
    seen: np.ndarray  # (n,) bool: accessed before (compulsory misses)
    prefetched: np.ndarray  # (n,) bool: in VRAM by a prefetch, not used yet
    arrival: np.ndarray  # (n,) float64: when the VRAM copy is complete
    ram_ready: np.ndarray  # (n,) float64: when the last NVMe read of the object into RAM is complete
    stalls: list[np.ndarray]  # per chunk, stall seconds of the steps that stalled

    @staticmethod
    def start(num_layers: int, num_objects: int) -> Tally:
        return Tally(np.zeros(len(ev.NAMES), np.int64), np.zeros(N_COUNTERS, np.int64), np.zeros(N_TIMES),
                     np.zeros(num_layers, np.int64), np.zeros(num_layers, np.int64), np.zeros(num_objects, bool),
                     np.zeros(num_objects, bool), np.zeros(num_objects), np.zeros(num_objects), [])


@njit(cache=True)
def _link(times, free, start, duration):
    """Queue a transfer on a link; returns its end time."""
    begin = max(start, times[free])
    end = begin + duration
    times[free] = end
    times[T_TRANSFER] += duration
    return end


@njit(cache=True, nogil=True)
def _account(ev_step, ev_kind, ev_obj, step0, layer, tokens, decode, new_token, count, sizes, pcie_s, nvme_s,
             gpu_tok, gpu_floor, cpu_tok, cpu_floor, gpu_fixed, cpu_fixed, top_k, num_experts, kinds, counters, times, layer_accesses,
             layer_hits, seen, prefetched, arrival, ram_ready, stalls):
    i = 0
    n_events = ev_step.shape[0]
    n_stalls = 0
    for s in range(layer.shape[0]):
        t0 = times[T_NOW]
        ready_gpu = t0
        ready_cpu = t0
        n_gpu = 0
        n_cpu = 0
        gpu_time = 0.0
        cpu_time = 0.0
        per_expert = tokens[s] * top_k / max(count[s], 1)
        while i < n_events and ev_step[i] == step0 + s:
            kind, obj = ev_kind[i], ev_obj[i]
            i += 1
            kinds[kind] += 1
            b = sizes[obj]
            if kind <= ev.CPU_NVME:  # a demand access
                counters[C_ACCESSES] += 1
                layer_accesses[obj // num_experts] += 1
                if kind == ev.HIT:
                    layer_hits[obj // num_experts] += 1
                    if prefetched[obj]:
                        counters[C_PF_USED] += 1
                        prefetched[obj] = False
                elif not seen[obj]:
                    counters[C_COMPULSORY] += 1
                seen[obj] = True
            if kind == ev.HIT:
                ready_gpu = max(ready_gpu, arrival[obj])
            elif kind == ev.LOAD_RAM or kind == ev.STAGE_RAM:
                end = _link(times, T_PCIE_FREE, max(t0, ram_ready[obj]), pcie_s[obj])
                arrival[obj] = end
                ready_gpu = max(ready_gpu, end)
                counters[C_PCIE_BYTES] += b
            elif kind == ev.LOAD_NVME or kind == ev.STAGE_NVME:
                ram_ready[obj] = _link(times, T_NVME_FREE, t0, nvme_s[obj])
                end = _link(times, T_PCIE_FREE, ram_ready[obj], pcie_s[obj])
                arrival[obj] = end
                ready_gpu = max(ready_gpu, end)
                counters[C_NVME_BYTES] += b
                counters[C_PCIE_BYTES] += b
            elif kind == ev.CPU_NVME:
                ram_ready[obj] = _link(times, T_NVME_FREE, t0, nvme_s[obj])
                ready_cpu = max(ready_cpu, ram_ready[obj])
                counters[C_NVME_BYTES] += b
            elif kind == ev.CPU_RAM:
                ready_cpu = max(ready_cpu, ram_ready[obj])
            elif kind == ev.PREFETCH_RAM or kind == ev.FILL:
                arrival[obj] = _link(times, T_PCIE_FREE, max(t0, ram_ready[obj]), pcie_s[obj])
                counters[C_PCIE_BYTES] += b
            elif kind == ev.PREFETCH_NVME:
                ram_ready[obj] = _link(times, T_NVME_FREE, t0, nvme_s[obj])
                arrival[obj] = _link(times, T_PCIE_FREE, ram_ready[obj], pcie_s[obj])
                counters[C_NVME_BYTES] += b
                counters[C_PCIE_BYTES] += b
            elif kind == ev.READAHEAD:
                ram_ready[obj] = _link(times, T_NVME_FREE, t0, nvme_s[obj])
                counters[C_NVME_BYTES] += b
            elif kind == ev.DEMOTE:
                _link(times, T_DOWN_FREE, t0, pcie_s[obj])
                counters[C_DOWN_BYTES] += b
            elif kind == ev.EVICT_VRAM and prefetched[obj]:
                counters[C_PF_WASTED] += 1
                prefetched[obj] = False
            if kind == ev.PREFETCH_RAM or kind == ev.PREFETCH_NVME:
                counters[C_PF_ISSUED] += 1
                prefetched[obj] = True
            if kind == ev.CPU_RAM or kind == ev.CPU_NVME:
                n_cpu += 1
                cpu_time += cpu_fixed[obj] + max(cpu_tok[obj] * per_expert, cpu_floor[obj])
            elif kind <= ev.STAGE_NVME:
                n_gpu += 1
                gpu_time += gpu_fixed[obj] + max(gpu_tok[obj] * per_expert, gpu_floor[obj])
        end = max(max(ready_gpu, t0) + gpu_time, max(ready_cpu, t0) + cpu_time)
        stall = max(ready_gpu, ready_cpu) - t0
        times[T_COMPUTE] += end - t0 - stall
        times[T_STALL] += stall
        if stall > 0:
            stalls[n_stalls] = stall
            n_stalls += 1
        if decode[s]:
            times[T_DECODE] += end - t0
            counters[C_DECODE_TOKENS] += new_token[s]
        else:
            times[T_PREFILL] += end - t0
            if new_token[s]:
                counters[C_PREFILL_TOKENS] += tokens[s]
        times[T_NOW] = end
        counters[C_STEPS] += 1
    counters[C_STALLED_STEPS] += n_stalls
    return n_stalls


def account(tally: Tally, rates: Rates, events: tuple[np.ndarray, np.ndarray, np.ndarray], step0: int,
            steps_layer: np.ndarray, steps_tokens: np.ndarray, steps_decode: np.ndarray,
            steps_new_token: np.ndarray, steps_count: np.ndarray, num_experts: int) -> None:
    """Add one chunk of whole steps and their events to `tally`."""
    ev_step, ev_kind, ev_obj = events
    stalls = np.empty(len(steps_layer), np.float64)
    n = _account(ev_step, ev_kind, ev_obj, step0, steps_layer, steps_tokens, steps_decode, steps_new_token,
                 steps_count, rates.sizes, rates.pcie_s, rates.nvme_s, rates.gpu_s_per_token, rates.gpu_floor_s,
                 rates.cpu_s_per_token, rates.cpu_floor_s, rates.gpu_fixed_s, rates.cpu_fixed_s, rates.top_k, num_experts, tally.kinds, tally.counters,
                 tally.times, tally.layer_accesses, tally.layer_hits, tally.seen, tally.prefetched, tally.arrival,
                 tally.ram_ready, stalls)
    tally.stalls.append(stalls[:n].astype(np.float32))
