"""Carries out the planner's events with real bytes and real compute, and measures the time.

The planner (`simulator.cache.ReferenceCache` with the chosen policies) decides; its listener hook
calls `on_event` as each event is decided, with the planner's tier state right after it, which
is how the executor knows whether an expert read from NVMe was also admitted to RAM. Per event:

| event | what happens |
|---|---|
| hit | the step computes from the expert's VRAM slot |
| load_ram / prefetch_ram / fill | copy RAM slot -> VRAM slot on the copy stream |
| load_nvme / prefetch_nvme | NVMe -> RAM slot (or a staging slot if RAM did not admit it) -> VRAM slot |
| stage_ram / stage_nvme | the same into a VRAM staging slot; computed there at once, not cached |
| cpu_ram / cpu_nvme | computed on the CPU from the RAM (or staging) slot |
| readahead | NVMe -> RAM slot only |
| evict_vram / evict_ram | the slot goes back to the free list (weights never change: nothing is written back) |
| demote | exclusive tiers: VRAM slot -> RAM slot on the copy stream |

NVMe reads run on the reader pool and hand their VRAM copy to the copy stream when they finish;
compute waits for each slot's copy event. Every write into a slot first waits until nothing reads
it (`SlotTier.quiesce`). Without CUDA the same code runs with synchronous host copies, and the
"VRAM" tier is a host-memory budget.

Legend: T tokens of the step, H hidden, k experts of the step.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.compute import GATHER_LIMIT, BatchedDecode, expert_ffn, slot_views
from engine.layout import ExpertLayout
from engine.nvme import NvmeReader
from engine.staging import PinnedStaging
from engine.tiers import DONE, SlotTier, done_future
from simulator import events as ev

HIDDEN_POOL = 64
PENDING_EVENTS = 4096  # steps whose CUDA timing events are kept before completed ones are read back
NVME_KINDS = (ev.LOAD_NVME, ev.PREFETCH_NVME, ev.STAGE_NVME, ev.CPU_NVME, ev.READAHEAD)
TO_VRAM = (ev.LOAD_RAM, ev.LOAD_NVME, ev.PREFETCH_RAM, ev.PREFETCH_NVME, ev.FILL)
DEMAND_MISS = (ev.LOAD_RAM, ev.LOAD_NVME, ev.STAGE_RAM, ev.STAGE_NVME, ev.CPU_RAM, ev.CPU_NVME)


@dataclass
class EngineOptions:
    """How the engine runs, beside the cache configuration it shares with `simulate`."""

    device: str = "cpu"  # "cuda" or "cpu"
    threads: int = 8  # NVMe reader threads
    direct: bool = True  # O_DIRECT where the filesystem allows it
    ring: int = 2  # staging slots per tier
    seed: int = 0
    audit: bool = False  # log every slot read and write (tests)
    capture: bool = False  # keep each expert's output per step (tests)


@dataclass
class Measured:
    """What the executor measured; times in seconds."""

    step_s: list[float] = field(default_factory=list)
    stall_s: list[float] = field(default_factory=list)
    demand_miss: list[bool] = field(default_factory=list)
    decode: list[bool] = field(default_factory=list)
    step_h2d: list[int] = field(default_factory=list)  # RAM -> VRAM bytes issued during each step
    step_nvme: list[int] = field(default_factory=list)  # NVMe -> RAM bytes issued during each step
    bytes_nvme: int = 0
    bytes_h2d: int = 0
    bytes_d2h: int = 0


class Executor:
    """The tiers, the reader pool and the compute of one run; `on_event` is the planner's listener."""

    def __init__(self, layout: ExpertLayout, planner, vram_slots: int, ram_slots: int | None, top_k: int,
                 options: EngineOptions) -> None:
        self.layout, self.planner, self.options = layout, planner, options
        self.fmt = fmt = layout.format
        self.device = torch.device(options.device)
        self.cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.compute_stream = torch.cuda.current_stream(self.device) if self.cuda else None
        self.vram = SlotTier("vram", vram_slots, 1, options.ring, fmt.slot_bytes, self.device, False, options.audit)
        self.ram = SlotTier("ram", ram_slots or 0, 1, options.ring + 2, fmt.slot_bytes, torch.device("cpu"),
                            self.cuda, options.audit)
        self.copy_bytes = max(p.offset + p.nbytes for p in fmt.parts)
        self.vviews = slot_views(self.vram.arena, fmt)
        self.rviews = slot_views(self.ram.arena, fmt)
        self.batched = (BatchedDecode(self.vram.arena, fmt, top_k, layout.swiglu_limit)
                        if self.cuda and fmt.expert_bytes <= GATHER_LIMIT else None)
        self.dtype = getattr(torch, fmt.dtype)
        generator = torch.Generator().manual_seed(options.seed)
        self.hidden = torch.randn(HIDDEN_POOL, fmt.hidden, generator=generator).to(self.dtype)  # (P, H)
        self.hidden_dev = self.hidden.to(self.device)
        self.staging = PinnedStaging(self.device)
        self.wait_s = 0.0
        self.reader = NvmeReader(layout, options.threads, options.direct)
        self.measured = Measured()
        self.captured: dict[tuple[int, int], torch.Tensor] = {}
        self.pending_events: list = []
        self.last_end = self._event()
        self.demoted_from: dict[int, int] = {}
        self.host_copy: dict[int, int] = {}  # object -> RAM staging slot holding it this step
        self.num_experts = layout.num_experts
        self.peak: dict[str, int] = {}  # audit: most slots in use per tier
        self.out_buf = torch.empty(1, fmt.hidden, dtype=torch.float32, device=self.device)

    # -- a step ------------------------------------------------------------------------------------

    def begin_step(self, step: int, experts: np.ndarray, weights: np.ndarray, layer: int) -> None:
        """Before the planner decides step `step`: its tokens' choices experts/weights (T, K)."""
        self.step = step
        self.t0 = time.perf_counter()
        self.wait_s = 0.0
        self.miss = False
        self.h2d_before = self.measured.bytes_h2d
        self.nvme_before = self.measured.bytes_nvme
        self.tokens = experts.shape[0]
        base = layer * self.num_experts
        self.routes: dict[int, tuple[list[int], list[float]]] = {}
        for t in range(experts.shape[0]):
            for e, w in zip(experts[t], weights[t]):
                rows, ws = self.routes.setdefault(base + int(e), ([], []))
                rows.append(t)
                ws.append(float(w))
        self.pool_rows = (np.arange(self.tokens) + step) % HIDDEN_POOL  # the step's hidden states in the pool
        first = self.pool_rows[0]
        self.x = (self.hidden_dev.index_select(0, self.staging.to_device(self.pool_rows)) if self.tokens > 1
                  else self.hidden_dev[first:first + 1])  # (T, H)
        if self.out_buf.shape[0] < self.tokens:
            self.out_buf = torch.empty(self.tokens, self.fmt.hidden, dtype=torch.float32, device=self.device)
        self.out = self.out_buf[:self.tokens].zero_()  # (T, H), the step's combined expert output
        self.gpu_needed: list[tuple[int, int]] = []  # (object, VRAM slot)
        self.host_copy.clear()
        self.demoted_from.clear()

    def finish_step(self, decode: bool) -> None:
        """Compute the step's experts from VRAM slots once their copies have landed; record the times."""
        slots = [slot for _, slot in self.gpu_needed]
        for slot in slots:
            self._wait_device(self.vram.ready[slot])
        ready = self._event()
        if self.batched is not None and self.tokens == 1 and len(slots) > 1 and not self.options.capture:
            idx = self.staging.to_device(np.array(slots, np.int64))
            ws = self.staging.to_device(np.array([self.routes[o][1][0] for o, _ in self.gpu_needed], np.float32))
            self.out += self.batched(idx, self.x, ws).float()
            done = self._event()
            for slot in slots:
                self.vram.released[slot] = done
        else:
            for obj, slot in self.gpu_needed:
                self._compute(obj, self.vviews[slot], self.vram, slot, self.x)
        end = self._event()
        if self.options.audit:
            self._audit_residency()
        m = self.measured
        m.decode.append(decode)
        m.demand_miss.append(self.miss)
        m.step_h2d.append(m.bytes_h2d - self.h2d_before)
        m.step_nvme.append(m.bytes_nvme - self.nvme_before)
        if self.cuda:
            self.pending_events.append((len(m.step_s), self.last_end, ready, end))
            m.step_s.append(0.0)
            m.stall_s.append(0.0)
            self.last_end = end
            if len(self.pending_events) > PENDING_EVENTS:
                self.resolve_times()
        else:
            m.step_s.append(time.perf_counter() - self.t0)
            m.stall_s.append(self.wait_s)

    def _audit_residency(self) -> None:
        """The slots hold exactly what the planner says each tier holds, within each tier's capacity."""
        for tier, planned in ((self.vram, self.planner.in_vram), (self.ram, self.planner.in_ram)):
            want = set(np.flatnonzero(planned).tolist())
            if set(tier.slot_of) != want or len(tier.slot_of) > tier.capacity:
                raise AssertionError(f"step {self.step}: {tier.name} slots hold {sorted(tier.slot_of)}, the planner "
                                     f"{sorted(want)}, capacity {tier.capacity}")
            self.peak[tier.name] = max(self.peak.get(tier.name, 0), len(tier.slot_of))

    def resolve_times(self, block: bool = False) -> None:
        """Fill in the step and stall times of steps whose CUDA events have completed."""
        keep = []
        for i, start, ready, end in self.pending_events:
            if block or end.query():
                end.synchronize()
                self.measured.step_s[i] = start.elapsed_time(end) / 1e3
                self.measured.stall_s[i] = max(start.elapsed_time(ready) / 1e3, 0.0)
            else:
                keep.append((i, start, ready, end))
        self.pending_events = keep

    def _compute(self, obj: int, views: dict[str, torch.Tensor], tier: SlotTier, slot: int, x: torch.Tensor) -> None:
        rows, ws = self.routes[obj]
        t0 = time.perf_counter()
        if len(rows) == self.tokens:
            xs, index = x, None
        else:
            rows_np = np.array(rows, np.int64)
            index = self._to(x.device, rows_np)
            xs = x.index_select(0, index)
        w = self._to(x.device, np.array(ws, np.float32)).unsqueeze(-1)
        y = expert_ffn(xs, views, self.fmt, self.layout.swiglu_limit)  # (T_e, H)
        if self.options.capture:
            self.captured[(self.step, obj)] = y.detach().to("cpu", copy=True)
        contribution = (y.float() * w).to(self.device)
        if index is None:
            self.out += contribution
        else:
            same = x.device.type == self.device.type
            self.out.index_add_(0, index if same else self._to(self.device, rows_np), contribution)
        tier.record(slot, "r", obj, t0)
        if tier is self.vram:
            tier.released[slot] = self._event()

    def _to(self, device: torch.device, array: np.ndarray) -> torch.Tensor:
        """A small host array as a tensor on `device`, without a stream sync when that is the GPU."""
        return self.staging.to_device(array) if device.type == "cuda" else torch.from_numpy(array)

    # -- events --------------------------------------------------------------------------------------

    def on_event(self, step: int, kind: int, obj: int) -> None:
        if kind == ev.HIT:
            self.gpu_needed.append((obj, self.vram.slot_of[obj]))
        elif kind == ev.EVICT_VRAM:
            self.demoted_from[obj] = self.vram.release(obj)
        elif kind == ev.EVICT_RAM:
            self.ram.release(obj)
        elif kind == ev.DEMOTE:
            self._demote(obj)
        elif kind == ev.READAHEAD:
            self._host_slot(obj, from_nvme=True)
        else:
            self._transfer(kind, obj)

    def _transfer(self, kind: int, obj: int) -> None:
        if kind in DEMAND_MISS:
            self.miss = True
        src = self._host_slot(obj, from_nvme=kind in NVME_KINDS)
        if kind in (ev.CPU_RAM, ev.CPU_NVME):
            self._wait_host(self.ram.ready[src])
            self._compute(obj, self.rviews[src], self.ram, src, self.hidden[self.pool_rows])
        elif kind in TO_VRAM:
            dst = self.vram.take(obj)
            self._copy_up(src, dst, obj, demand=kind in (ev.LOAD_RAM, ev.LOAD_NVME))
            if kind in (ev.LOAD_RAM, ev.LOAD_NVME):
                self.gpu_needed.append((obj, dst))
        else:  # staged: through a VRAM staging slot, computed there now
            dst = self.vram.ring_slot()
            self._copy_up(src, dst, obj, demand=True)
            self._wait_device(self.vram.ready[dst])
            self._compute(obj, self.vviews[dst], self.vram, dst, self.x)
        if not self.planner.in_ram[obj] and obj in self.ram.slot_of:  # exclusive tiers: moved up
            self.ram.release(obj)

    def _host_slot(self, obj: int, from_nvme: bool) -> int:
        """The RAM slot holding `obj`, reading it from NVMe first when the event says so: into its own RAM
        slot if the planner admitted it to RAM, else into a staging slot."""
        if not from_nvme:
            return self.ram.slot_of[obj] if obj in self.ram.slot_of else self.host_copy[obj]
        if self.planner.in_ram[obj]:
            slot = self.ram.take(obj)
        else:
            slot = self.ram.ring_slot()
            self.host_copy[obj] = slot
        waits = self._quiesce(self.ram, slot)
        t0 = time.perf_counter()
        before = (lambda: [e.synchronize() for e in waits]) if waits else None
        fut = self.reader.read(obj, self.ram.host[slot], before)
        self.measured.bytes_nvme += self.layout.format.expert_bytes
        if self.ram.log is not None:
            fut.add_done_callback(lambda _f, s=slot, o=obj, t=t0: self.ram.record(s, "w", o, t))
        self.ram.ready[slot] = fut
        return slot

    def _quiesce(self, tier: SlotTier, slot: int) -> list:
        t0 = time.perf_counter()
        waits = tier.quiesce(slot)
        self.wait_s += time.perf_counter() - t0
        return waits

    def _copy_up(self, src: int, dst: int, obj: int, demand: bool) -> None:
        """RAM slot src -> VRAM slot dst, after src's bytes are in and once nothing reads dst."""
        dst_waits = self._quiesce(self.vram, dst)
        src_ready = self.ram.ready[src]
        n = self.copy_bytes
        self.measured.bytes_h2d += self.fmt.expert_bytes

        def copy(_f: Future | None = None) -> object:
            event = src_ready.result()
            t0 = time.perf_counter()
            if not self.cuda:
                self.vram.arena[dst, :n].copy_(self.ram.arena[src, :n])
                self.vram.record(dst, "w", obj, t0)
                self.ram.record(src, "r", obj, t0)
                return None
            with torch.cuda.stream(self.copy_stream):
                for e in [event, *dst_waits]:
                    if e is not None:
                        self.copy_stream.wait_event(e)
                self.vram.arena[dst, :n].copy_(self.ram.arena[src, :n], non_blocking=True)
                return self.copy_stream.record_event()

        if src_ready.done():
            t0 = time.perf_counter()
            fut = done_future(copy())
            if demand and not self.cuda:
                self.wait_s += time.perf_counter() - t0
        else:
            fut = Future()
            src_ready.add_done_callback(lambda f: _settle(fut, copy, f))
        self.vram.ready[dst] = fut
        self.ram.users[src].append(fut)

    def _demote(self, obj: int) -> None:
        src = self.demoted_from.pop(obj)
        dst = self.ram.take(obj)
        waits = self._quiesce(self.ram, dst)
        n = self.copy_bytes
        self.measured.bytes_d2h += self.fmt.expert_bytes
        filled = self.vram.ready[src].result()  # the copy that filled src is issued (on the CPU: done)
        t0 = time.perf_counter()
        if not self.cuda:
            self.ram.arena[dst, :n].copy_(self.vram.arena[src, :n])
            self.ram.record(dst, "w", obj, t0)
            self.vram.record(src, "r", obj, t0)
            self.ram.ready[dst] = DONE
            return
        for e in waits:
            e.synchronize()
        with torch.cuda.stream(self.copy_stream):
            for e in (filled, self.vram.released[src]):
                if e is not None:
                    self.copy_stream.wait_event(e)
            self.ram.arena[dst, :n].copy_(self.vram.arena[src, :n], non_blocking=True)
            event = self.copy_stream.record_event()
        self.ram.ready[dst] = done_future(event)
        self.vram.released[src] = event  # a later copy into src waits for this read

    # -- synchronisation -----------------------------------------------------------------------------

    def _event(self):
        """A timed event on the compute stream (None without CUDA)."""
        if not self.cuda:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record(self.compute_stream)
        return event

    def _wait_host(self, fut: Future) -> None:
        t0 = time.perf_counter()
        event = fut.result()
        if event is not None:
            event.synchronize()
        self.wait_s += time.perf_counter() - t0

    def _wait_device(self, fut: Future) -> None:
        """The compute stream waits for a slot's copy; the host waits only until the copy is issued."""
        t0 = time.perf_counter()
        event = fut.result()
        self.wait_s += time.perf_counter() - t0
        if event is not None:
            self.compute_stream.wait_event(event)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self.resolve_times(block=True)

    def close(self) -> None:
        """Stop the readers and give the arenas' memory back (counters, logs and captures stay)."""
        self.reader.close()
        self.vviews = self.rviews = self.batched = None
        self.vram.free_arena()
        self.ram.free_arena()


def _settle(fut: Future, fn, source: Future) -> None:
    """Run fn once `source` is done and pass its result (or error) to `fut`."""
    try:
        fut.set_result(fn(source))
    except BaseException as exc:  # noqa: BLE001 - handed to the waiter
        fut.set_exception(exc)
