"""ARC (Megiddo and Modha, FAST 2003): recency (T1) and frequency (T2) lists whose split p adapts to
hits in the ghosts of what each list evicted (B1, B2).

As libCacheSim's `ARC`, per partition of the tier, in bytes. A hit moves the object to the front of
T2. A miss found in B1 raises p by max(|B2| / |B1|, 1) objects' worth (at most the capacity), one
found in B2 lowers it by max(|B1| / |B2|, 1) (at least 0); it leaves the ghost and enters T2. Any
other miss enters T1. To make room after a ghost hit: REPLACE, which evicts T1's oldest into B1 if
T1 is not empty and holds more than p (or exactly p after a B2 hit), or T2 is empty, else T2's
oldest into B2. After other misses: if T1 + B1 would exceed the capacity, drop B1's oldest and
REPLACE, or, with B1 empty, evict T1's oldest with no ghost; else drop B2's oldest when all four
lists reach twice the capacity, then REPLACE. libCacheSim moves p by max(ratio, 1) bytes; here it
moves by that many times the incoming object's size, which is the same for unit sizes and keeps p
meaningful for experts of megabytes. Pinned objects are passed over; if the chosen list has none
unpinned, the other one is used.
"""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from simulator.jit import njit
from simulator.policies import queues
from simulator.policies.base import QueuedPolicy, TierView
from simulator.policies.fast import CAP, SIZE, Rules, partition, register, state_class

T1, T2, B1, B2 = range(4)
# fast state integers, each + t: the object being admitted, the ghost it was in, the chosen victim, its ghost
PENDING, FROM, EVICTING, TO_GHOST = 0, 2, 4, 6
ARCState = state_class("ARCState", __name__, [
    ("prev", np.ndarray),  # (2, n + 4P) int64: see simulator.policies.queues
    ("nxt", np.ndarray),
    ("queue", np.ndarray),  # (2, n) int64 list each object is in, -1 none
    ("used", np.ndarray),  # (2, P, 4) int64 bytes in each list
    ("p", np.ndarray),  # (2, P) float64 target bytes of T1
    ("par", np.ndarray),  # (8,) int64 integers above (-1: none)
])


class ARC(QueuedPolicy):
    name = "arc"
    num_queues = 4

    def __init__(self, params: object, tier: TierView) -> None:
        super().__init__(params, tier)
        self.p = np.zeros(len(tier.capacity))
        self.pending, self.ghost_hit = -1, -1  # the object being admitted and the ghost it came from
        self.evicting, self.to_ghost = -1, -1  # the chosen victim and the ghost it goes to

    def on_hit(self, obj: int, tick: int) -> None:
        self.drop(obj, self.queue_of(obj))
        self.add(obj, T2)

    def admit(self, obj: int) -> bool:
        part, size = self.tier.partition(obj), int(self.tier.sizes[obj])
        b1, b2 = self.used[part, B1], self.used[part, B2]
        self.pending, self.ghost_hit = obj, -1
        if obj in self.queues[part][B1]:
            self.p[part] = min(self.p[part] + max(b2 / b1, 1.0) * size, float(self.tier.capacity[part]))
            self.ghost_hit = B1
        elif obj in self.queues[part][B2]:
            self.p[part] = max(self.p[part] - max(b1 / b2, 1.0) * size, 0.0)
            self.ghost_hit = B2
        if self.ghost_hit >= 0:
            self.drop(obj, self.ghost_hit)
        return True

    def on_insert(self, obj: int, tick: int) -> None:
        self.add(obj, T2 if self.pending == obj and self.ghost_hit >= 0 else T1)
        self.pending = -1

    def on_remove(self, obj: int) -> None:
        where = self.queue_of(obj)
        self.drop(obj, where)
        if obj == self.evicting and self.to_ghost >= 0:
            self.add(obj, self.to_ghost)
        self.evicting = -1

    def _replace(self, part: int, after_b2: bool) -> int:
        t1, t2 = self.used[part, T1], self.used[part, T2]
        p = self.p[part]
        return T1 if (t1 > 0 and (t1 > p or (t1 == p and after_b2))) or t2 == 0 else T2

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        part, size = self.tier.partition(incoming), int(self.tier.sizes[incoming])
        used, lists = self.used[part], self.queues[part]
        ghost_hit = self.ghost_hit if self.pending == incoming else -1
        source, ghost = T1, B1
        if ghost_hit >= 0:
            source = self._replace(part, ghost_hit == B2)
        elif used[T1] + used[B1] + size > self.tier.capacity[part]:
            if used[B1] > 0:
                self.drop(next(iter(lists[B1])), B1)
                source = self._replace(part, False)
            else:
                ghost = -1
        else:
            if used.sum() >= 2 * self.tier.capacity[part] and used[B2] > 0:
                self.drop(next(iter(lists[B2])), B2)
            source = self._replace(part, False)
        if source == T2:
            ghost = B2
        for q in (source, T2 if source == T1 else T1):
            obj = next((x for x in lists[q] if x not in pinned), None)
            if obj is not None:
                self.evicting, self.to_ghost = obj, (ghost if q == source else (B1 if q == T1 else B2))
                return obj
        return None

    @staticmethod
    def fast_state(params: object, vram: TierView, ram: TierView | None) -> ARCState:
        n, parts = vram.num_layers * vram.num_experts, len(vram.capacity)
        return ARCState(*queues.links(n, parts, 4), queue=np.full((2, n), -1, np.int64),
                     used=np.zeros((2, parts, 4), np.int64), p=np.zeros((2, parts)),
                     par=np.full(8, -1, np.int64))


@njit(cache=True, _nrt=False)
def _replace(ps, t, part, after_b2):
    t1, t2 = ps.used[t, part, T1], ps.used[t, part, T2]
    p = ps.p[t, part]
    return T1 if (t1 > 0 and (t1 > p or (t1 == p and after_b2))) or t2 == 0 else T2


def hit(ps, cs, t, obj, tick):
    queues.drop(ps, cs, t, obj)
    queues.add(ps, cs, t, obj, T2)


def admit(ps, cs, t, obj):
    part, size = partition(cs, obj), cs.obj[SIZE, obj]
    b1, b2 = ps.used[t, part, B1], ps.used[t, part, B2]
    ps.par[PENDING + t] = obj
    ps.par[FROM + t] = -1
    if ps.queue[t, obj] == B1:
        ps.p[t, part] = min(ps.p[t, part] + max(b2 / b1, 1.0) * size, float(cs.part[CAP + t, part]))
        ps.par[FROM + t] = B1
    elif ps.queue[t, obj] == B2:
        ps.p[t, part] = max(ps.p[t, part] - max(b1 / b2, 1.0) * size, 0.0)
        ps.par[FROM + t] = B2
    if ps.par[FROM + t] >= 0:
        queues.drop(ps, cs, t, obj)
    return True


def insert(ps, cs, t, obj, tick):
    queues.add(ps, cs, t, obj, T2 if ps.par[PENDING + t] == obj and ps.par[FROM + t] >= 0 else T1)
    ps.par[PENDING + t] = -1


def remove(ps, cs, t, obj):
    queues.drop(ps, cs, t, obj)
    if obj == ps.par[EVICTING + t] and ps.par[TO_GHOST + t] >= 0:
        queues.add(ps, cs, t, obj, ps.par[TO_GHOST + t])
    ps.par[EVICTING + t] = -1


def victim(ps, cs, t, incoming):
    part, size = partition(cs, incoming), cs.obj[SIZE, incoming]
    capacity = cs.part[CAP + t, part]
    ghost_hit = ps.par[FROM + t] if ps.par[PENDING + t] == incoming else -1
    source, ghost = T1, B1
    if ghost_hit >= 0:
        source = _replace(ps, t, part, ghost_hit == B2)
    elif ps.used[t, part, T1] + ps.used[t, part, B1] + size > capacity:
        if ps.used[t, part, B1] > 0:
            queues.drop(ps, cs, t, ps.prev[t, queues.head(ps, part, B1)])
            source = _replace(ps, t, part, False)
        else:
            ghost = -1
    else:
        if ps.used[t, part].sum() >= 2 * capacity and ps.used[t, part, B2] > 0:
            queues.drop(ps, cs, t, ps.prev[t, queues.head(ps, part, B2)])
        source = _replace(ps, t, part, False)
    if source == T2:
        ghost = B2
    obj = queues.oldest_unpinned(ps, cs, t, part, source)
    if obj < 0:
        source = T2 if source == T1 else T1
        ghost = B1 if source == T1 else B2
        obj = queues.oldest_unpinned(ps, cs, t, part, source)
    ps.par[EVICTING + t] = obj
    ps.par[TO_GHOST + t] = ghost
    return obj


register(ARCState, Rules(on_hit=hit, on_insert=insert, on_remove=remove, admit=admit, victim=victim,
                        inline=True))
