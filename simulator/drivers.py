"""The three ways to replay steps, behind one `run(steps, next uses, prefetch plan, step0, sink)`:
the plain reference (policy objects), the numba kernel (every policy and mode), and the tight loop
for plain demand caching. Each hands its events, a batch of whole steps at a time, to `sink`. The fast
drivers write them into two sets of arrays in turn (`EventBuffers`), so a batch is the sink's to read until
the sink returns from the batch after it: the accounting reads one batch on its thread while the driver
fills the other set, and waits for that batch before it takes the next."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator import kernel as kn
from simulator.cache import ReferenceCache
from simulator.config import Resolved, SimConfig
from simulator.demand_kernel import DEMAND_POLICIES, N_EV, demand_replay
from simulator.half import bits
from simulator.hardware import Hardware
from simulator.policies import build_policy, fast, policy_class
from simulator.policies.base import TierView
from simulator.steps import Steps
from traces.reader import Trace

EVENT_BUFFER = 1 << 18  # events per kernel call, 3.25 MiB: 1 << 20 made two-tier replays up to 1.3x slower,
# likely as the events left the caches; a step's worst case (2 per object, 4 per access and hint) fits to 100k objects
NO_LOGITS = np.zeros((1, 1), np.uint16)  # read-only, as a trace's logits are (`TraceArrays.frozen`): one kernel
NO_LOGITS.flags.writeable = False


class EventBuffers:
    """Two sets of event arrays (step int64, kind int8, object int32), handed out in turn; no copies between
    the kernel and the accounting."""

    def __init__(self) -> None:
        n = EVENT_BUFFER
        self.sets = [(np.zeros(n, np.int64), np.zeros(n, np.int8), np.zeros(n, np.int32)) for _ in range(2)]
        self.turn = 0

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The set the sink is done with: not the one of the batch handed to it last."""
        self.turn ^= 1
        return self.sets[self.turn]


def tier_views(trace: Trace, sizes: np.ndarray, hw: Hardware, resolved: Resolved,
               future: np.ndarray | None) -> tuple[TierView, TierView | None]:
    meta = trace.meta
    cache = resolved.cache
    view = TierView(meta.num_layers, meta.num_experts, sizes, hw.pcie_seconds(sizes), cache.vram, cache.per_layer,
                    future)
    if cache.ram is None:
        return view, None
    return view, TierView(meta.num_layers, meta.num_experts, sizes, hw.nvme_seconds(sizes), cache.ram,
                          cache.per_layer, future)


class ReferenceDriver:
    """The plain implementation: policy objects and `simulator.cache.ReferenceCache`."""

    def __init__(self, config: SimConfig, params: object, vram: TierView, ram: TierView | None,
                 resolved: Resolved, future: np.ndarray | None) -> None:
        vp = build_policy(config.policy, params, vram)
        rp = None if ram is None else build_policy(config.policy, params, ram)
        self.cache = ReferenceCache(resolved.cache, vram.sizes, vram.num_experts, vp, rp, future)

    def run(self, steps: Steps, acc_next: np.ndarray | None, prefetch: tuple[np.ndarray, np.ndarray], step0: int,
            sink: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], int, int], None]) -> None:
        events = self.cache.run(steps, acc_next, prefetch, step0)
        arrays = np.array(events, np.int64).reshape(-1, 3)
        sink((arrays[:, 0], arrays[:, 1].astype(np.int8), arrays[:, 2].astype(np.int32)), 0, len(steps))

    @property
    def routing(self) -> np.ndarray:
        r = self.cache.routing
        return np.array([r.changed_steps, r.tokens, r.weight_lost])


class KernelDriver:
    """The numba implementation: `simulator.kernel`, specialised on the policy's fast state."""

    def __init__(self, config: SimConfig, params: object, vram: TierView, ram: TierView | None,
                 resolved: Resolved, future: np.ndarray | None) -> None:
        cache = resolved.cache
        n = vram.num_layers * vram.num_experts
        cfg = np.zeros(fast.CFG_FIELDS, np.int64)
        cfg[[fast.PER_LAYER, fast.INCLUSIVE, fast.SEQUENTIAL, fast.CPU_COMPUTE, fast.HAS_RAM, fast.LAYERS, fast.EXPERTS,
             fast.HAS_FUTURE, fast.ROUTING]] = [
            cache.per_layer, cache.inclusive, cache.sequential, cache.cpu_compute, ram is not None, vram.num_layers,
            vram.num_experts, future is not None, cache.routing_bonus is not None]
        obj = np.zeros((fast.OBJ_ROWS, n), np.int64)
        obj[fast.SIZE] = vram.sizes
        obj[fast.PIN] = -1
        if future is not None:
            obj[fast.NEXT] = future
        part = np.zeros((4, len(cache.vram)), np.int64)
        part[fast.CAP] = cache.vram
        if cache.ram is not None:
            part[fast.CAP + 1] = cache.ram
        self.buffers = EventBuffers()
        ev_step, ev_kind, ev_obj = self.buffers.sets[0]
        self.core = fast.CoreState(cfg=cfg, scal=np.zeros(3, np.int64), obj=obj, part=part, ev_step=ev_step,
                                   ev_kind=ev_kind, ev_obj=ev_obj,
                                   fl=np.array([cache.routing_bonus or 0.0, 0.0, 0.0, 0.0]))
        self.policy = policy_class(config.policy).fast_state(params, vram, ram)

    def run(self, steps: Steps, acc_next: np.ndarray | None, prefetch: tuple[np.ndarray, np.ndarray], step0: int,
            sink: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], int, int], None]) -> None:
        rows = steps.rows
        logits = bits(rows.logits) if rows.logits is not None else NO_LOGITS
        nexts = acc_next if acc_next is not None else np.zeros(1, np.int64)
        start = 0
        while start < len(steps):
            events = self.buffers.take()
            cs = self.core._replace(ev_step=events[0], ev_kind=events[1], ev_obj=events[2])
            stop = kn.replay(self.policy, cs, step0, start, steps.layer, steps.ptr, steps.objects, steps.row_ptr,
                             rows.experts, logits, nexts, prefetch[0], prefetch[1])
            if stop == start:
                raise RuntimeError(f"event buffer of {len(events[0])} events cannot hold one step's")
            n = cs.scal[fast.N_EV]
            cs.scal[fast.N_EV] = 0
            sink(tuple(a[:n] for a in events), start, stop)
            start = stop

    @property
    def routing(self) -> np.ndarray:
        return self.core.fl[1:].copy()


class DemandDriver:
    """Plain demand caching with LRU, FIFO, LFU or Belady: `simulator.demand_kernel`'s tight loop."""

    def __init__(self, config: SimConfig, params: object, vram: TierView, ram: TierView | None,
                 resolved: Resolved, future: np.ndarray | None) -> None:
        n = vram.num_layers * vram.num_experts
        self.policy = DEMAND_POLICIES[config.policy]
        self.bypass = int(getattr(params, "bypass", 0))
        self.capacity = int(resolved.cache.vram[0])
        self.sizes = vram.sizes.astype(np.int64)
        self.resident = np.zeros(n, bool)
        self.key = np.zeros(n, np.int64)
        self.count = np.zeros(n, np.int64)
        self.future = future if future is not None else np.zeros(n, np.int64)
        self.hk = np.zeros(4 * n + 64, np.int64)
        self.ho = np.zeros(4 * n + 64, np.int32)
        self.prev = np.full(n + 1, n, np.int32)  # circular list with sentinel n, empty
        self.next = np.full(n + 1, n, np.int32)
        self.scal = np.zeros(4, np.int64)
        self.buffers = EventBuffers()

    @staticmethod
    def handles(config: SimConfig, params: object, resolved: Resolved) -> bool:
        cache = resolved.cache
        return (cache.sequential and cache.ram is None and not cache.per_layer and not cache.cpu_compute
                and config.prefetch == "none" and cache.routing_bonus is None
                and config.policy in DEMAND_POLICIES and not getattr(params, "decay_every", 0))

    def run(self, steps: Steps, acc_next: np.ndarray | None, prefetch: tuple[np.ndarray, np.ndarray], step0: int,
            sink: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], int, int], None]) -> None:
        nexts = acc_next if acc_next is not None else np.zeros(1, np.int64)
        start = 0
        while start < len(steps):
            events = self.buffers.take()
            stop = demand_replay(self.policy, self.bypass, self.capacity, self.sizes, self.resident, self.key,
                                 self.count, self.future, self.hk, self.ho, self.prev, self.next, self.scal, step0,
                                 start, steps.ptr, steps.objects, nexts, *events)
            n = self.scal[N_EV]
            self.scal[N_EV] = 0
            sink(tuple(a[:n] for a in events), start, stop)
            start = stop

    routing = np.zeros(3)
