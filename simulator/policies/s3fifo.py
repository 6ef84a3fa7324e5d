"""S3-FIFO (Yang et al., SOSP 2023): a small FIFO that filters one-hit wonders, a main FIFO with
reinsertion, and a ghost FIFO that remembers what the small queue dropped.

As libCacheSim's `S3FIFO` (current version), per partition of the tier, counted in experts of the
partition's largest size (so that the truncations are libCacheSim's for unit sizes): the small queue
gets max(1, int(slots * small_ratio)) of the partition's slots, the main queue the rest of its bytes, the
ghost int(slots * ghost_ratio).
A miss remembered by the ghost enters main, any other the small queue (main, too, while the small
queue is full and nothing was evicted yet). A hit adds 1 to the object's count. To evict: from main
while main is over its share or the small queue is empty, else from the small queue. The small
queue's oldest object moves to main (count 0) if its count reached `threshold`, else it is evicted
into the ghost. Main's oldest is reinserted with min(count, 3) - 1 while its count is positive,
else evicted. Pinned objects are passed over, where they are; if the chosen queue has none
unpinned, the other is tried. One difference from libCacheSim: its small queue must hold two
objects or it caches nothing (below 20 unit-size objects in all); here the small queue holds at
least one expert, so that S3-FIFO works at the few experts per layer of MoE offloading. With two
or more slots in the small queue the two agree.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from simulator.policies import queues
from simulator.policies.base import QueuedPolicy, TierView, check_range
from simulator.policies.fast import SIZE, Rules, partition, register, state_class

SMALL, MAIN, GHOST = range(3)
THRESHOLD, PENDING, EVICTING = 0, 1, 3  # fast state integers: PENDING + t, EVICTING + t
S3FIFOState = state_class("S3FIFOState", __name__, [
    ("prev", np.ndarray),  # (2, n + 3P) int64: see simulator.policies.queues
    ("nxt", np.ndarray),
    ("queue", np.ndarray),  # (2, n) int64 queue each object is in, -1 none
    ("count", np.ndarray),  # (2, n) int64 hits since insertion (or since the last reinsertion)
    ("used", np.ndarray),  # (2, P, 3) int64 bytes in each queue
    ("cap", np.ndarray),  # (2, P, 3) int64 bytes each queue may hold
    ("evicted", np.ndarray),  # (2, P) bool: the partition has evicted before
    ("par", np.ndarray),  # (5,) int64 [threshold, pending ghost hit per tier, small-queue victim per tier]
])


@dataclass(frozen=True)
class S3FIFOParams:
    small_ratio: float = 0.1  # share of the capacity for the small queue
    ghost_ratio: float = 0.9  # ghost size, as a share of the capacity
    threshold: int = 2  # hits in the small queue that earn a move to main

    def validate(self) -> S3FIFOParams:
        check_range("small_ratio", self.small_ratio, 0.0, 1.0)
        check_range("ghost_ratio", self.ghost_ratio, 0.0)
        check_range("threshold", self.threshold, 1)
        return self


def queue_capacities(params: S3FIFOParams, tier: TierView) -> np.ndarray:
    """(P, 3) bytes of the small, main and ghost queues of each partition (C's truncation, as libCacheSim)."""
    layer_max = tier.sizes.reshape(tier.num_layers, -1).max(axis=1)
    unit = layer_max if tier.per_layer else np.array([layer_max.max()])
    slots = tier.capacity // unit
    small = np.array([max(int(int(s) * params.small_ratio), 1) for s in slots], np.int64) * unit
    ghost = np.array([int(int(s) * params.ghost_ratio) for s in slots], np.int64) * unit
    return np.stack([small, tier.capacity.astype(np.int64) - small, ghost], axis=1)


class S3FIFO(QueuedPolicy):
    name = "s3fifo"
    Params = S3FIFOParams
    num_queues = 3

    def __init__(self, params: S3FIFOParams, tier: TierView) -> None:
        super().__init__(params, tier)
        self.cap = queue_capacities(params, tier)
        self.evicted = np.zeros(len(tier.capacity), bool)
        self.count: dict[int, int] = {}
        self.pending = -1  # the object whose admission found it in the ghost
        self.evicting = -1  # the small-queue victim, which goes to the ghost when removed

    def on_hit(self, obj: int, tick: int) -> None:
        self.count[obj] += 1

    def admit(self, obj: int) -> bool:
        part, size = self.tier.partition(obj), self.tier.sizes[obj]
        self.pending = -1
        if obj in self.queues[part][GHOST]:
            self.drop(obj, GHOST)
            self.pending = obj
        return size <= self.cap[part, SMALL]

    def on_insert(self, obj: int, tick: int) -> None:
        part = self.tier.partition(obj)
        full = not self.evicted[part] and self.used[part, SMALL] >= self.cap[part, SMALL]
        self.add(obj, MAIN if self.pending == obj or full else SMALL)
        self.count[obj] = 0
        self.pending = -1

    def on_remove(self, obj: int) -> None:
        self.drop(obj, self.queue_of(obj))
        del self.count[obj]
        if obj != self.evicting:
            return
        self.evicting = -1
        part, size = self.tier.partition(obj), self.tier.sizes[obj]
        ghost = self.queues[part][GHOST]
        if size <= self.cap[part, GHOST]:
            while self.used[part, GHOST] + size > self.cap[part, GHOST]:
                self.drop(next(iter(ghost)), GHOST)
            self.add(obj, GHOST)

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        part = self.tier.partition(incoming)
        self.evicted[part] = True
        small, main = self.queues[part][SMALL], self.queues[part][MAIN]
        if self.used[part, MAIN] <= self.cap[part, MAIN] and any(obj not in pinned for obj in small):
            while (obj := next((x for x in small if x not in pinned), None)) is not None:
                if self.count[obj] < self.params.threshold:
                    self.evicting = obj
                    return obj
                self.drop(obj, SMALL)
                self.add(obj, MAIN)
                self.count[obj] = 0
        while (obj := next((x for x in main if x not in pinned), None)) is not None:
            if self.count[obj] == 0:
                return obj
            main.move_to_end(obj)
            self.count[obj] = min(self.count[obj], 3) - 1
        obj = next((x for x in small if x not in pinned), None)  # main had nothing unpinned
        self.evicting = -1 if obj is None else obj
        return obj

    @staticmethod
    def fast_state(params: S3FIFOParams, vram: TierView, ram: TierView | None) -> S3FIFOState:
        n, parts = vram.num_layers * vram.num_experts, len(vram.capacity)
        cap = np.stack([queue_capacities(params, view) for view in (vram, ram or vram)])
        return S3FIFOState(*queues.links(n, parts, 3), queue=np.full((2, n), -1, np.int64),
                     count=np.zeros((2, n), np.int64), used=np.zeros((2, parts, 3), np.int64), cap=cap,
                     evicted=np.zeros((2, parts), np.bool_), par=np.array([params.threshold, -1, -1, -1, -1], np.int64))


def hit(ps, cs, t, obj, tick):
    ps.count[t, obj] += 1


def admit(ps, cs, t, obj):
    part, size = partition(cs, obj), cs.obj[SIZE, obj]
    ps.par[PENDING + t] = -1
    if ps.queue[t, obj] == GHOST:
        queues.drop(ps, cs, t, obj)
        ps.par[PENDING + t] = obj
    return size <= ps.cap[t, part, SMALL]


def insert(ps, cs, t, obj, tick):
    part = partition(cs, obj)
    full = not ps.evicted[t, part] and ps.used[t, part, SMALL] >= ps.cap[t, part, SMALL]
    queues.add(ps, cs, t, obj, MAIN if ps.par[PENDING + t] == obj or full else SMALL)
    ps.count[t, obj] = 0
    ps.par[PENDING + t] = -1


def remove(ps, cs, t, obj):
    queues.drop(ps, cs, t, obj)
    if obj != ps.par[EVICTING + t]:
        return
    ps.par[EVICTING + t] = -1
    part, size = partition(cs, obj), cs.obj[SIZE, obj]
    if size <= ps.cap[t, part, GHOST]:
        head = queues.head(ps, part, GHOST)
        while ps.used[t, part, GHOST] + size > ps.cap[t, part, GHOST]:
            queues.drop(ps, cs, t, ps.prev[t, head])
        queues.add(ps, cs, t, obj, GHOST)


def victim(ps, cs, t, incoming):
    part = partition(cs, incoming)
    ps.evicted[t, part] = True
    if ps.used[t, part, MAIN] <= ps.cap[t, part, MAIN]:
        obj = queues.oldest_unpinned(ps, cs, t, part, SMALL)
        while obj >= 0:
            if ps.count[t, obj] < ps.par[THRESHOLD]:
                ps.par[EVICTING + t] = obj
                return obj
            queues.drop(ps, cs, t, obj)
            queues.add(ps, cs, t, obj, MAIN)
            ps.count[t, obj] = 0
            obj = queues.oldest_unpinned(ps, cs, t, part, SMALL)
    obj = queues.oldest_unpinned(ps, cs, t, part, MAIN)
    while obj >= 0:
        if ps.count[t, obj] == 0:
            return obj
        queues.drop(ps, cs, t, obj)
        queues.add(ps, cs, t, obj, MAIN)
        ps.count[t, obj] = min(ps.count[t, obj], 3) - 1
        obj = queues.oldest_unpinned(ps, cs, t, part, MAIN)
    obj = queues.oldest_unpinned(ps, cs, t, part, SMALL)
    ps.par[EVICTING + t] = obj
    return obj


register(S3FIFOState, Rules(on_hit=hit, on_insert=insert, on_remove=remove, admit=admit, victim=victim,
                           inline=True))
