"""The two-tier cache model of DESIGN.md section 4, written plainly: the reference implementation.

VRAM and RAM hold (layer, expert) objects over NVMe. The core owns the loop and every decision's
mechanics (lookup, admit, evict until it fits, stage, prefetch) and emits one event per decision
(`simulator.events`); policies, one instance per tier, only rank and admit. `simulator.kernel`
is the same model in numba, and the tests hold the two to the same event stream.

Rules, in the order the core applies them at each step:
- The step's objects (after memory-aware re-routing, if on) are shown to both policies (`on_step`).
- Each object is looked up in VRAM, then RAM. In *step* mode all objects of the step are pinned:
  never evicted to make room for each other; a miss that cannot be admitted streams through the
  staging buffer (counted, not cached). In *sequential* mode (plain demand caching, libCacheSim's
  semantics) each object is its own request and only it is pinned.
- Inclusive tiers: an expert read from NVMe is also admitted to RAM (if the RAM policy admits it),
  and an expert in VRAM cannot be evicted from RAM. Exclusive tiers: an expert is in at most one
  tier; a RAM expert moves up and a VRAM victim is demoted to RAM. Pins protect RAM residents only in cpu-compute mode.
- cpu-compute mode: a VRAM miss is computed on the CPU from RAM; the policy may still copy the
  expert into VRAM in the background (FILL) for later steps.
- Then the prefetch plan of the step is shown to the policies (`on_hint`) and issued, in order,
  pinning the step's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

import numpy as np

from simulator import events as ev
from simulator.policies.base import Policy
from simulator.routing import reroute
from simulator.steps import Steps


@dataclass(frozen=True)
class CacheConfig:
    """Tier capacities per partition (one per layer with per_layer, else one) and the model's mode."""

    vram: np.ndarray  # (P,) bytes
    ram: np.ndarray | None  # (P,) bytes; None: no RAM tier (every miss reads NVMe)
    per_layer: bool = False
    inclusive: bool = True
    sequential: bool = False
    cpu_compute: bool = False
    routing_bonus: float | None = None


@dataclass
class RoutingTally:
    """What memory-aware routing changed: steps, tokens, and the softmax mass it gave up."""

    changed_steps: int = 0
    tokens: int = 0
    weight_lost: float = 0.0


class ReferenceCache:
    """Plain Python replay. `future` (Belady) holds each object's next access index."""

    def __init__(self, config: CacheConfig, sizes: np.ndarray, num_experts: int, vram_policy: Policy,
                 ram_policy: Policy | None, future: np.ndarray | None = None) -> None:
        self.config, self.sizes, self.num_experts = config, sizes, num_experts
        self.vp, self.rp = vram_policy, ram_policy
        self.future = future
        n = len(sizes)
        self.in_vram = np.zeros(n, bool)
        self.in_ram = np.zeros(n, bool)
        self.used_vram = np.zeros(len(config.vram), np.int64)
        self.used_ram = np.zeros(len(config.vram), np.int64)
        self.tick = 0
        self.routing = RoutingTally()
        self.events: list[tuple[int, int, int]] = []
        self.step_index = 0
        self.listener: Callable[[int, int, int], None] | None = None

    def run(self, steps: Steps, acc_next: np.ndarray | None, plan: tuple[np.ndarray, np.ndarray],
            step0: int) -> list[tuple[int, int, int]]:
        """Replay whole steps; returns this chunk's events as (global step, kind, object)."""
        events: list[tuple[int, int, int]] = []
        plan_ptr, plan_objects = plan
        for s in range(len(steps)):
            nexts = None if acc_next is None else acc_next[steps.ptr[s]:steps.ptr[s + 1]]
            events += self.step(step0 + s, int(steps.layer[s]), self._route(steps, s), nexts,
                                plan_objects[plan_ptr[s]:plan_ptr[s + 1]])
        return events

    def step(self, step: int, layer: int, objects: list[int], next_uses: np.ndarray | None,
             hints: np.ndarray) -> list[tuple[int, int, int]]:
        """The planner's per-step interface: one layer step in (its objects, their next uses for Belady, the
        prefetcher's hints), its events out; policy state is kept between calls. `listener(step, kind, obj)`,
        if set, sees each event as it is decided, with the tiers' state right after it."""
        self.events = []
        self.step_index = step
        self.vp.on_step(step, layer, objects)
        if self.rp is not None:
            self.rp.on_step(step, layer, objects)
        pinned = set(objects)
        for i, obj in enumerate(objects):
            if self.future is not None:
                self.future[obj] = next_uses[i]
            self._access(obj, {obj} if self.config.sequential else pinned)
        for policy in (self.vp, self.rp):
            if policy is not None and len(hints):
                policy.on_hint(step, hints)
        for obj in hints:
            self._prefetch(int(obj), set() if self.config.sequential else pinned)
        return self.events

    def _route(self, steps: Steps, s: int) -> list[int]:
        recorded = [int(x) for x in steps.objects[steps.ptr[s]:steps.ptr[s + 1]]]
        bonus = self.config.routing_bonus
        if bonus is None:
            return recorded
        e = self.num_experts
        base = int(steps.layer[s]) * e
        resident = self.in_vram[base:base + e].copy()
        rows = steps.rows
        objects: list[int] = []
        for r in range(steps.row_ptr[s], steps.row_ptr[s + 1]):
            chosen, lost = reroute(rows.logits[r], rows.experts[r], resident, bonus)
            self.routing.tokens += 1
            self.routing.weight_lost += lost
            for x in chosen:
                if base + int(x) not in objects:
                    objects.append(base + int(x))
        self.routing.changed_steps += set(objects) != set(recorded)
        return objects

    def _emit(self, kind: int, obj: int) -> None:
        self.events.append((self.step_index, kind, obj))
        if self.listener is not None:
            self.listener(self.step_index, kind, obj)

    def _next_tick(self) -> int:
        self.tick += 1
        return self.tick

    def _part(self, obj: int) -> int:
        return obj // self.num_experts if self.config.per_layer else 0

    def _access(self, obj: int, pinned: Container[int]) -> None:
        if self.in_vram[obj]:
            self.vp.on_hit(obj, self._next_tick())
            self._emit(ev.HIT, obj)
            return
        from_ram = self.rp is not None and bool(self.in_ram[obj])
        if from_ram:
            self.rp.on_hit(obj, self._next_tick())
        if self.config.cpu_compute:
            if not from_ram and self.rp is not None:
                self._ram_admit(obj, pinned)
            self._emit(ev.CPU_RAM if from_ram else ev.CPU_NVME, obj)
            if self._load(obj, pinned):
                self._emit(ev.FILL, obj)
            return
        admitted = self._load(obj, pinned)
        if admitted:
            self._emit(ev.LOAD_RAM if from_ram else ev.LOAD_NVME, obj)
        else:
            self._emit(ev.STAGE_RAM if from_ram else ev.STAGE_NVME, obj)

    def _prefetch(self, obj: int, pinned: Container[int]) -> None:
        if self.in_vram[obj]:
            return
        from_ram = self.rp is not None and bool(self.in_ram[obj])
        if self._load(obj, pinned):
            self._emit(ev.PREFETCH_RAM if from_ram else ev.PREFETCH_NVME, obj)
        elif not from_ram and self.rp is not None and self.in_ram[obj]:
            self._emit(ev.READAHEAD, obj)

    def _load(self, obj: int, pinned: Container[int]) -> bool:
        """Bring `obj` into VRAM; False if it cannot be admitted. Under inclusion an NVMe expert also
        lands in RAM (if RAM admits it), admitted to VRAM or not. Exclusive tiers move a RAM expert up
        (its RAM slot is freed first, so a demoted victim can take it; it goes back if not admitted)."""
        inclusive = self.config.inclusive and self.rp is not None
        moving_up = self.rp is not None and not inclusive and bool(self.in_ram[obj])
        if moving_up:
            self._ram_remove(obj)
        if not self._vram_admit(obj, pinned):
            if moving_up or (inclusive and not self.in_ram[obj]):
                self._ram_admit(obj, pinned)
            return False
        if inclusive and (self.in_ram[obj] or self._ram_admit(obj, pinned)):
            self.rp.on_remove(obj)  # not evictable from RAM while in VRAM
        return True

    def _ram_remove(self, obj: int) -> None:
        self.in_ram[obj] = False
        self.used_ram[self._part(obj)] -= self.sizes[obj]
        self.rp.on_remove(obj)

    def _vram_admit(self, obj: int, pinned: Container[int]) -> bool:
        if not self.vp.admit(obj):
            return False
        part, size = self._part(obj), self.sizes[obj]
        while self.used_vram[part] + size > self.config.vram[part]:
            victim = self.vp.victim(obj, pinned)
            if victim is None:
                return False
            self._evict_vram(victim, pinned)
        self.in_vram[obj] = True
        self.used_vram[part] += size
        self.vp.on_insert(obj, self._next_tick())
        return True

    def _evict_vram(self, obj: int, pinned: Container[int]) -> None:
        self.in_vram[obj] = False
        self.used_vram[self._part(obj)] -= self.sizes[obj]
        self.vp.on_remove(obj)
        self._emit(ev.EVICT_VRAM, obj)
        if self.rp is None:
            return
        if self.config.inclusive:
            if self.in_ram[obj]:
                self.rp.on_insert(obj, self._next_tick())  # evictable from RAM again
        elif self._ram_admit(obj, pinned):
            self._emit(ev.DEMOTE, obj)

    def _ram_admit(self, obj: int, pinned: Container[int]) -> bool:
        if not self.rp.admit(obj):
            return False
        part, size = self._part(obj), self.sizes[obj]
        ram_pins = pinned if self.config.cpu_compute else ()  # only the CPU computes from RAM
        while self.used_ram[part] + size > self.config.ram[part]:
            victim = self.rp.victim(obj, ram_pins)
            if victim is None:
                return False
            self._ram_remove(victim)
            self._emit(ev.EVICT_RAM, victim)
        self.in_ram[obj] = True
        self.used_ram[part] += size
        self.rp.on_insert(obj, self._next_tick())
        return True
