"""The RAM and VRAM tiers: one arena each, allocated once, cut into fixed expert slots.

An arena holds `capacity` cache slots (what the planner's byte budget allows), `spare` extra cache
slots (an exclusive move-up frees its RAM bytes in the planner before the demoted victim takes
them, so for a moment both hold a slot), and a small staging ring for experts that pass through
without being cached. RAM is one pinned allocation when CUDA is used (plain host memory otherwise);
VRAM is one device allocation, or host memory standing in for it without CUDA.

Each slot carries its synchronisation, so that a slot is never overwritten while anything reads it:
- `ready[s]`: a Future of the write that filled the slot, whose result is the CUDA event that marks
  its completion on the device (None where the write was synchronous or host-side);
- `users[s]`: Futures of the copies still reading the slot (host side), each resolving to its event;
- `released[s]`: the CUDA event recorded after the last computation that read the slot.
With `audit` on, every write and read of a slot is logged with its host time interval, so tests
can check that no read overlaps a write of the same slot.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

import torch

from engine.layout import ALIGN

DONE: Future = Future()
DONE.set_result(None)


def done_future(value: object) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


class SlotTier:
    """One arena of (capacity + spare + ring) slots of `slot_bytes`, and which object is in which slot."""

    def __init__(self, name: str, capacity: int, spare: int, ring: int, slot_bytes: int, device: torch.device,
                 pinned: bool, audit: bool = False) -> None:
        self.name, self.capacity = name, capacity
        total = capacity + spare + ring
        raw = torch.empty(total * slot_bytes + ALIGN, dtype=torch.uint8, device=device, pin_memory=pinned)
        start = (-raw.data_ptr()) % ALIGN
        self.raw = raw
        self.arena = raw[start:start + total * slot_bytes].view(total, slot_bytes)  # (slots, slot_bytes)
        self.host = self.arena.numpy() if self.arena.device.type == "cpu" else None
        self.free = list(range(capacity + spare - 1, -1, -1))
        self.ring = list(range(capacity + spare, total))
        self.ring_next = 0
        self.slot_of: dict[int, int] = {}
        self.ready: list[Future] = [DONE] * total
        self.users: list[list[Future]] = [[] for _ in range(total)]
        self.released: list[object | None] = [None] * total
        self.log: list[tuple[int, str, int, float, float]] | None = [] if audit else None

        self.nbytes = self.arena.numel()

    def free_arena(self) -> None:
        self.raw = self.arena = self.host = None

    def take(self, obj: int) -> int:
        if obj in self.slot_of:
            raise RuntimeError(f"{self.name}: object {obj} already has a slot")
        if not self.free:
            raise RuntimeError(f"{self.name}: no free slot for object {obj} (capacity {self.capacity})")
        slot = self.free.pop()
        self.slot_of[obj] = slot
        return slot

    def release(self, obj: int) -> int:
        slot = self.slot_of.pop(obj)
        self.free.append(slot)
        return slot

    def ring_slot(self) -> int:
        slot = self.ring[self.ring_next]
        self.ring_next = (self.ring_next + 1) % len(self.ring)
        return slot

    def quiesce(self, slot: int) -> list[object]:
        """Wait (host side) until no earlier write or copy of `slot` is pending; returns the device events
        that a new write must still wait for."""
        self.ready[slot].result()
        events = [f.result() for f in self.users[slot]]
        self.users[slot] = []
        if self.released[slot] is not None:
            events.append(self.released[slot])
        return [e for e in events if e is not None]

    def record(self, slot: int, kind: str, obj: int, start: float) -> None:
        """Audit: `kind` ('w' or 'r') of `slot` from host time `start` until now."""
        if self.log is not None:
            self.log.append((slot, kind, obj, start, time.perf_counter()))


def overlaps(log: list[tuple[int, str, int, float, float]]) -> list[tuple]:
    """Pairs of (write, read) or (write, write) intervals of one slot that overlap in time."""
    bad = []
    by_slot: dict[int, list] = {}
    for entry in log:
        by_slot.setdefault(entry[0], []).append(entry)
    for entries in by_slot.values():
        entries.sort(key=lambda e: e[3])
        writes = [e for e in entries if e[1] == "w"]
        for w in writes:
            for other in entries:
                if other is not w and other[3] < w[4] and w[3] < other[4]:
                    bad.append((w, other))
    return bad
