"""Replay one trace through one configuration: resolve capacities, stream steps row group by row
group, drive the cache (numba kernel, or the plain reference), account events, summarise.

Belady reads the future: a first pass writes every access's object to a disk-backed array and
computes next-use indices backwards, so even Belady's memory does not grow with the trace.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from numba import njit

from simulator import accounting as ac
from simulator import kernel as kn
from simulator.cache import CacheConfig, ReferenceCache
from simulator.demand_kernel import DEMAND_POLICIES, N_EV, demand_replay
from simulator.hardware import Hardware, check_dtype, expert_sizes, params_per_expert
from simulator.metrics import RunResult, summarize
from simulator.mrc import belady_curve, lru_curve
from simulator.policies import build_policy, policy_class
from simulator.policies.base import TierView
from simulator.policies.watermark import credit_density, distance_discount
from simulator.prefetchers import make_prefetcher, plan
from simulator.steps import Steps, iter_steps
from traces.errors import MoecacheError
from traces.reader import Trace, open_trace

NEVER = np.int64(1) << 62  # next use of an object that is not used again
EVENT_BUFFER = 1 << 20


@dataclass(frozen=True)
class SimConfig:
    """Everything a run depends on besides the trace. Capacities: bytes, or experts (which win)."""

    policy: str
    hardware: Hardware
    params: object | None = None
    prefetch: str = "none"
    prefetch_limit: int | None = None  # default: top-k
    vram_bytes: int | None = None  # default: the preset's
    vram_experts: int | None = None  # in all, or per layer with per_layer
    ram_bytes: int | None = None  # default: the preset's; 0: no RAM tier
    ram_experts: int | None = None
    per_layer: bool = False
    inclusive: bool = True
    cpu_compute: bool = False
    sequential: bool | None = None  # default: only for --global with no RAM tier (plain demand caching)
    routing_bonus: float | None = None
    precision: str | None = None
    engine: str = "fast"  # or "reference"


@dataclass(frozen=True)
class Resolved:
    """Capacities per partition and the mode, after checking they can work."""

    cache: CacheConfig
    vram_bytes: int
    ram_bytes: int
    mode: str


def resolve(config: SimConfig, trace: Trace, sizes: np.ndarray) -> Resolved:
    """Capacities per partition; one clear line if a tier cannot hold what one step needs."""
    meta = trace.meta
    layers, e, k = meta.num_layers, meta.num_experts, meta.top_k
    layer_size = sizes.reshape(layers, e).max(axis=1)
    parts = layers if config.per_layer else 1

    def capacity(experts: int | None, nbytes: int | None) -> np.ndarray:
        if experts is not None:
            return (experts * layer_size) if config.per_layer else np.array([experts * int(layer_size.max())])
        return np.full(parts, int(nbytes) // parts, np.int64)

    hw = config.hardware
    vram = capacity(config.vram_experts, config.vram_bytes if config.vram_bytes is not None else hw.vram_bytes)
    ram_total = config.ram_bytes if config.ram_bytes is not None else hw.ram_bytes
    no_ram = config.ram_experts == 0 if config.ram_experts is not None else ram_total == 0
    ram = None if no_ram else capacity(config.ram_experts, ram_total)
    sequential = config.sequential if config.sequential is not None else (ram is None and not config.per_layer)
    need_each = (layer_size if config.per_layer else np.array([layer_size.max()])).astype(np.int64)
    staging = 0 if sequential or config.vram_experts is not None else int(layer_size.max())
    vram = vram.astype(np.int64) - staging
    need = need_each * (1 if sequential else k)
    short = np.flatnonzero(vram < need)
    if len(short):
        p = int(short[0])
        where = f"layer {p}'s share of " if config.per_layer else ""
        extra = f" plus the {staging:,} B staging buffer" if staging else ""
        raise MoecacheError(
            f"{where}VRAM ({int(vram[p] + staging):,} B) cannot hold one step's "
            f"{int(need[p] // need_each[p])} expert(s) of {int(need_each[p]):,} B{extra}; raise --vram "
            f"(or --vram-experts) to at least {int(need[p] + staging) * parts:,} B")
    if ram is not None and config.inclusive and (ram < vram + staging).any():
        raise MoecacheError("inclusive tiers need RAM at least as large as VRAM (every VRAM expert is also in "
                            "RAM); raise --ram, or use --exclusive, or --ram 0 for no RAM tier")
    mode = "sequential demand caching" if sequential else "pinned steps"
    cache = CacheConfig(vram=vram, ram=ram, per_layer=config.per_layer, inclusive=config.inclusive,
                        sequential=sequential, cpu_compute=config.cpu_compute, routing_bonus=config.routing_bonus)
    return Resolved(cache, int(vram.sum()), 0 if ram is None else int(ram.sum()), mode)


def rates_for(hw: Hardware, sizes: np.ndarray, dtype: str, top_k: int) -> ac.Rates:
    params = params_per_expert(sizes, dtype)
    return ac.Rates(sizes=sizes, pcie_s=hw.pcie_seconds(sizes), nvme_s=hw.nvme_seconds(sizes),
                    gpu_s_per_token=2.0 * params / hw.gpu_flops, gpu_floor_s=sizes / hw.gpu_memory_bandwidth,
                    cpu_s_per_token=2.0 * params / hw.cpu_flops, cpu_floor_s=sizes / hw.cpu_memory_bandwidth,
                    top_k=top_k)


@njit(cache=True)
def _next_uses(objects: np.ndarray, next_use: np.ndarray, last: np.ndarray) -> None:
    """Backwards: next_use[a] = the next index with the same object, NEVER if none; `last` ends as
    each object's first index."""
    for a in range(objects.shape[0] - 1, -1, -1):
        obj = objects[a]
        next_use[a] = last[obj]
        last[obj] = a


def access_chunks(trace: Trace) -> Iterator[np.ndarray]:
    """The objects of every access, in order, one row group at a time."""
    for steps in iter_steps(trace):
        yield steps.objects


def access_stream(trace: Trace) -> np.ndarray:
    """All accesses of a trace as one (A,) int32 array of objects."""
    chunks = list(access_chunks(trace))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def next_uses(objects: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(next use of each access, first use of each object), NEVER where there is none."""
    following = np.empty(len(objects), np.int64)
    first = np.full(num_objects, NEVER, np.int64)
    _next_uses(objects, following, first)
    return following, first


class Future:
    """Next-use indices of every access of a trace, on disk (numpy memmaps in a temporary folder)."""

    def __init__(self, trace: Trace) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="moecache-future-")
        folder = Path(self._dir.name)
        total = 0
        with (folder / "objects.bin").open("wb") as f:  # one pass over the trace, appended as it goes
            for chunk in access_chunks(trace):
                f.write(chunk.astype(np.int32).tobytes())
                total += len(chunk)
        objects = np.memmap(folder / "objects.bin", dtype=np.int32, mode="r", shape=(total,)) if total \
            else np.zeros(0, np.int32)
        self.next_use = np.lib.format.open_memmap(folder / "next.npy", mode="w+", dtype=np.int64,
                                                  shape=(max(total, 1),))
        self.first_use = np.full(trace.meta.num_layers * trace.meta.num_experts, NEVER, np.int64)
        _next_uses(objects, self.next_use[:total], self.first_use)
        del objects

    def close(self) -> None:
        self._dir.cleanup()


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
    if config.engine not in ("fast", "reference"):
        raise MoecacheError(f"unknown engine '{config.engine}'; use fast or reference")
    check_dtype(config.hardware, config.precision or trace.meta.dtype, str(trace.path))


def simulate(path: Path | str, config: SimConfig, progress: Callable[[int, int], None] | None = None,
             on_events: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> RunResult:
    """Replay the trace at `path` under `config`; `progress(rows_done, rows_total)` after each row group,
    `on_events(steps, kinds, objects)` with every batch of events (the tests compare implementations)."""
    trace = open_trace(path)
    meta = trace.meta
    check(config, trace)
    params = config.params if config.params is not None else policy_class(config.policy).Params().validate()
    sizes = expert_sizes(meta, config.precision)
    resolved = resolve(config, trace, sizes)
    cls = policy_class(config.policy)
    future = Future(trace) if cls.needs_future else None
    try:
        live_future = future.first_use.copy() if future is not None else None
        vram, ram = tier_views(trace, sizes, config.hardware, resolved, live_future)
        if config.engine == "reference":
            driver_cls = ReferenceDriver
        else:
            driver_cls = DemandDriver if DemandDriver.handles(config, params, resolved) else KernelDriver
        driver = driver_cls(config, params, vram, ram, resolved, live_future)
        limit = config.prefetch_limit or meta.top_k
        prefetcher = make_prefetcher(config.prefetch, meta.num_layers, meta.num_experts, limit)
        rates = rates_for(config.hardware, sizes, meta.dtype, meta.top_k)
        tally = ac.Tally.start(meta.num_layers, len(sizes))
        step0 = acc0 = rows = 0
        for steps in iter_steps(trace, logits=config.routing_bonus is not None,
                                lookahead=config.prefetch == "lookahead"):
            if steps.rows.logits is not None:
                steps.rows.logits = steps.rows.logits.astype(np.float32)
            acc_next = None if future is None else np.asarray(future.next_use[acc0:acc0 + steps.accesses])
            count = np.diff(steps.ptr)

            def sink(events, lo, hi, steps=steps, count=count, step0=step0):
                if on_events is not None:
                    on_events(*(a.copy() for a in events))
                ac.account(tally, rates, events, step0 + lo, steps.layer[lo:hi], steps.tokens[lo:hi],
                           steps.decode[lo:hi], steps.new_token[lo:hi], count[lo:hi], meta.num_experts)

            driver.run(steps, acc_next, plan(prefetcher, steps), step0, sink)
            step0 += len(steps)
            acc0 += steps.accesses
            rows += len(steps.rows)
            if progress is not None:
                progress(rows, trace.num_rows)
    finally:
        if future is not None:
            future.close()
    return summarize(tally, driver.routing, trace=str(path), policy=config.policy, prefetch=config.prefetch,
                     vram_bytes=resolved.vram_bytes, ram_bytes=resolved.ram_bytes, model=meta.model,
                     preset=config.hardware.name, policy_params=repr(params), mode=resolved.mode)


def miss_ratio_curves(trace: Trace) -> dict[str, object]:
    """LRU and Belady miss ratios of plain demand caching at every capacity (in experts), one pass each."""
    objects = access_stream(trace)
    n = trace.meta.num_layers * trace.meta.num_experts
    following, _ = next_uses(objects, n)
    lru, belady = lru_curve(objects, n), belady_curve(objects, following, n)
    return {"trace": str(trace.path), "accesses": len(objects), "compulsory": lru.compulsory,
            "capacity": list(range(1, n + 1)), "lru": lru.ratios().tolist(), "belady": belady.ratios().tolist()}
