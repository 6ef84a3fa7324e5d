"""The three ways to replay steps, behind one `run(steps, next uses, prefetch plan, step0, sink)`:
the plain reference (policy objects), the numba kernel (every policy and mode), and the tight loop
for plain demand caching. Each hands its events, a batch of whole steps at a time, to `sink`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import numpy as np

from simulator import kernel as kn
from simulator.cache import ReferenceCache
from simulator.config import Resolved, SimConfig
from simulator.demand_kernel import DEMAND_POLICIES, N_EV, demand_replay
from simulator.hardware import Hardware
from simulator.policies import build_policy, policy_class
from simulator.policies.base import TierView
from simulator.policies.watermark import credit_density, distance_discount
from simulator.steps import Steps
from traces.reader import Trace

EVENT_BUFFER = 1 << 20


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
    """The numba implementation: `simulator.kernel` over flat state arrays."""

    def __init__(self, config: SimConfig, params: object, vram: TierView, ram: TierView | None,
                 resolved: Resolved, future: np.ndarray | None) -> None:
        cls = policy_class(config.policy)
        cache = resolved.cache
        layers, e = vram.num_layers, vram.num_experts
        n = layers * e
        heaps = layers if (cache.per_layer or cls.code == kn.LAYER_LRU) else 1
        per_heap = e if heaps > 1 else n
        values = {f.name: getattr(params, f.name) for f in fields(params)}
        cfg = np.zeros(14, np.int64)
        cfg[[kn.POLICY, kn.PER_LAYER, kn.INCLUSIVE, kn.SEQUENTIAL, kn.CPU_COMPUTE, kn.HAS_RAM, kn.LAYERS, kn.EXPERTS,
             kn.HEAPS, kn.DECAY_EVERY, kn.MAX_ITERS, kn.HAS_FUTURE, kn.ROUTING, kn.BYPASS]] = [
            cls.code, cache.per_layer, cache.inclusive, cache.sequential, cache.cpu_compute, ram is not None, layers, e,
            heaps, values.get("decay_every", 0), values.get("max_iters", 1), future is not None,
            cache.routing_bonus is not None, values.get("bypass", 0)]
        ram_view = ram if ram is not None else vram
        caps = np.zeros((2, len(cache.vram)), np.int64)
        caps[0] = cache.vram
        if cache.ram is not None:
            caps[1] = cache.ram
        gamma = values.get("gamma", 0.0)
        self.state = kn.KernelState(
            cfg=cfg, fp=np.array([values.get("alpha", 0.0), values.get("eta", 0.0), cache.routing_bonus or 0.0,
                            values.get("lookahead_weight", 0.0)]),
            sizes=vram.sizes.astype(np.int64), cap=caps, used=np.zeros_like(caps), res=np.zeros((2, n), bool),
            cand=np.zeros((2, n), bool), key=np.zeros((2, n), np.int64), count=np.zeros((2, n), np.int64),
            hk=np.zeros((2, heaps, 4 * per_heap + 64), np.int64), ho=np.zeros((2, heaps, 4 * per_heap + 64), np.int32),
            hn=np.zeros((2, heaps), np.int64), stash_k=np.zeros(n, np.int64), stash_o=np.zeros(n, np.int32),
            p=np.zeros(n), dens=np.stack([credit_density(vram), credit_density(ram_view)]),
            disc=distance_discount(gamma, layers), lam=np.zeros((2, len(cache.vram))),
            last_chosen=np.full(n, -1, np.int64), hinted=np.full(n, -1, np.int64), future=future if future is not None else np.zeros(n, np.int64),
            pin=np.full(n, -1, np.int64), scal=np.array([0, 0, 0, -1, 0, -1], np.int64),
            ev_step=np.zeros(EVENT_BUFFER, np.int64), ev_kind=np.zeros(EVENT_BUFFER, np.int8),
            ev_obj=np.zeros(EVENT_BUFFER, np.int32), routing=np.zeros(3), step_objs=np.zeros(n, np.int32),
            mark=np.full(n, -(1 << 62), np.int64))

    def run(self, steps: Steps, acc_next: np.ndarray | None, prefetch: tuple[np.ndarray, np.ndarray], step0: int,
            sink: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], int, int], None]) -> None:
        st = self.state
        rows = steps.rows
        logits = rows.logits if rows.logits is not None else np.zeros((1, 1), np.float32)
        nexts = acc_next if acc_next is not None else np.zeros(1, np.int64)
        start = 0
        while start < len(steps):
            stop = kn.replay(st, step0, start, steps.layer, steps.ptr, steps.objects, steps.row_ptr, rows.experts,
                             logits, nexts, prefetch[0], prefetch[1])
            if stop == start:
                raise RuntimeError(f"event buffer of {len(st.ev_step)} events cannot hold one step's")
            n = st.scal[kn.N_EV]
            sink((st.ev_step[:n], st.ev_kind[:n], st.ev_obj[:n]), start, stop)
            st.scal[kn.N_EV] = 0
            start = stop

    @property
    def routing(self) -> np.ndarray:
        return self.state.routing.copy()


class DemandDriver:
    """Plain demand caching with LRU, FIFO, LFU or Belady: `simulator.demand_kernel`'s tight loop."""

    def __init__(self, config: SimConfig, params: object, vram: TierView, ram: TierView | None,
                 resolved: Resolved, future: np.ndarray | None) -> None:
        n = vram.num_layers * vram.num_experts
        self.policy = policy_class(config.policy).code
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
        self.events = (np.zeros(EVENT_BUFFER, np.int64), np.zeros(EVENT_BUFFER, np.int8),
                       np.zeros(EVENT_BUFFER, np.int32))

    @staticmethod
    def handles(config: SimConfig, params: object, resolved: Resolved) -> bool:
        cache = resolved.cache
        return (cache.sequential and cache.ram is None and not cache.per_layer and not cache.cpu_compute
                and config.prefetch == "none" and cache.routing_bonus is None
                and policy_class(config.policy).code in DEMAND_POLICIES and not getattr(params, "decay_every", 0))

    def run(self, steps: Steps, acc_next: np.ndarray | None, prefetch: tuple[np.ndarray, np.ndarray], step0: int,
            sink: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], int, int], None]) -> None:
        nexts = acc_next if acc_next is not None else np.zeros(1, np.int64)
        start = 0
        while start < len(steps):
            stop = demand_replay(self.policy, self.bypass, self.capacity, self.sizes, self.resident, self.key,
                                 self.count, self.future, self.hk, self.ho, self.prev, self.next, self.scal, step0,
                                 start, steps.ptr, steps.objects, nexts, *self.events)
            n = self.scal[N_EV]
            sink(tuple(a[:n] for a in self.events), start, stop)
            self.scal[N_EV] = 0
            start = stop

    routing = np.zeros(3)
