"""Affinity (the ruvllm seed): an EMA-like score per expert; evict the lowest score.

Every step multiplies every score by `decay`; a chosen expert's score becomes min(score + 1, 1).
Because a chosen expert always lands at 1 and all scores decay alike, a score equals
decay ** (steps since the expert was last chosen), and the eviction order is that of the step
when each expert was last *chosen* (never chosen first; ties: lower id). It differs from LRU in
what refreshes an expert: routing choices only, not admissions, so a prefetched expert that is
never chosen stays cold. The affinity prefetcher uses the same scores.

The fast rules keep each partition's candidates in one list ordered by (step last chosen, id), oldest
first (`simulator.policies.queues`), so the victim is the oldest unpinned one, as the reference's
smallest key. A demand use ranks its object after every other (it was chosen in this step; only the
step's objects used before it, with greater ids, are passed); a prefetched object keeps the step it
was last chosen and is placed by a walk, which finds the right place from any node of the list: from
the end nearer to that step, or, where one partition holds every layer's candidates, from a candidate
ranked with that key or one of the NEAR below it (`recent`). From the newest end, a walk crossed every
layer's candidates since that step: 5.1 s of a 10M-access replay with the lookahead prefetcher and two
tiers global (LRU: 0.55 s), 1.0 s now. Against the indexed heap this replaced, kernel alone on a
10M-access Qwen3-shaped trace (best of two, alternated): demand 0.54 -> 0.37 s, two tiers global 1.00
-> 0.58 s, per layer 0.88-0.90 -> 0.79-0.81 s, with the lookahead prefetcher 1.75-1.77 -> 1.33 s, with
transitions 1.57 -> 1.30 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.jit import njit
from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView, check_range
from simulator.policies.fast import PER_LAYER, Rules, partition, register, state_class
from simulator.policies.lru import ONE_LIST, leave, oldest, one_list_state

AffinityState = state_class("AffinityState", __name__, ONE_LIST + [
    ("key", np.ndarray),  # (2, n) int64: the step each candidate was last chosen at when it was ranked
    ("chosen", np.ndarray),  # (n,) int64: the step each object was last chosen at, -1 never
    ("recent", np.ndarray),  # (2, RECENT) int64: a candidate last ranked with key k at [t, k % RECENT], -1 none
])
RECENT = 1024  # keys remembered, a power of two above NEAR
NEAR = 64  # keys at and below a prefetched object's searched for a node to start its walk from


@dataclass(frozen=True)
class AffinityParams:
    decay: float = 0.99  # per-step multiplier of every score

    def validate(self) -> AffinityParams:
        check_range("decay", self.decay, 0.0, 1.0)
        return self


class Affinity(KeyedPolicy):
    name = "affinity"
    Params = AffinityParams

    def __init__(self, params: AffinityParams, tier: TierView) -> None:
        super().__init__(params, tier)
        self.last_chosen = np.full(tier.num_layers * tier.num_experts, -1, np.int64)
        self.step = -1

    def on_step(self, step: int, layer: int, objects: Sequence[int]) -> None:
        self.step = step
        self.last_chosen[list(objects)] = step

    def score(self, obj: int) -> float:
        last = self.last_chosen[obj]
        return 0.0 if last < 0 else self.params.decay ** (self.step - last)

    def on_hit(self, obj: int, tick: int) -> None:
        self.keys[obj] = int(self.last_chosen[obj])

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = int(self.last_chosen[obj])

    @staticmethod
    def fast_state(params: AffinityParams, vram: TierView, ram: TierView | None) -> AffinityState:
        n = vram.num_layers * vram.num_experts
        return one_list_state(AffinityState, vram, key=np.zeros((2, n), np.int64), chosen=np.full(n, -1, np.int64),
                              recent=np.full((2, RECENT), -1, np.int64))


def chosen(ps, cs, step, layer, objs):
    for obj in objs:
        ps.chosen[obj] = step


@njit(cache=True, _nrt=False, inline="always")
def ranks_after(ps, t, node, key, obj):
    """Whether candidate `node` ranks after (key, obj): chosen later, or at the same step with a greater id."""
    return ps.key[t, node] > key or (ps.key[t, node] == key and node > obj)


@njit(cache=True, _nrt=False, inline="always")
def near(ps, cs, t, obj, key):
    """A candidate of obj's partition in tier t ranked with a key in key - NEAR + 1 .. key, -1 if none remembered."""
    part = partition(cs, obj)
    for below in range(NEAR):
        node = ps.recent[t, (key - below) & (RECENT - 1)]
        if node >= 0 and ps.queue[t, node] >= 0 and ps.key[t, node] == key - below and partition(cs, node) == part:
            return node
    return -1


def rank(ps, cs, t, obj, tick):
    if ps.queue[t, obj] >= 0:
        queues.drop(ps, cs, t, obj)
    key = ps.chosen[obj]
    ps.key[t, obj] = key
    sentinel = queues.head(ps, partition(cs, obj), 0)
    front, back = ps.nxt[t, sentinel], ps.prev[t, sentinel]  # the newest and the oldest
    start = front
    if front != sentinel and key < ps.key[t, front]:  # a prefetched object
        start = front if ps.key[t, front] - key <= key - ps.key[t, back] else back
        if key > ps.key[t, back] and not cs.cfg[PER_LAYER]:  # inside a list of every layer's: start near its key
            found = near(ps, cs, t, obj, key)
            start = found if found >= 0 else start
    node = start
    if node != sentinel and ranks_after(ps, t, node, key, obj):  # toward the oldest, past those that rank after
        while node != sentinel and ranks_after(ps, t, node, key, obj):
            node = ps.nxt[t, node]
        newer = ps.prev[t, node]
    else:  # toward the newest, past those that rank before
        while node != sentinel and not ranks_after(ps, t, node, key, obj):
            node = ps.prev[t, node]
        newer = node
    queues.insert_after(ps, cs, t, obj, 0, newer)
    ps.recent[t, key & (RECENT - 1)] = obj


register(AffinityState, Rules(on_step=chosen, on_hit=rank, on_insert=rank, on_remove=leave, victim=oldest,
                             inline=True))
