"""LFU: evict the resident used least often; among equals, the one whose count changed longest ago.

This is libCacheSim's `LFU` (frequency buckets, FIFO within a bucket, counts forgotten on eviction):
an object enters at count 1 and each hit adds 1. With `decay_every = n > 0`, every n steps all
counts are halved (never below 1), so that past popularity fades, like LFU with aging
(Arlitt et al., 2000); 0 turns decay off.

The fast rules keep libCacheSim's structure, per tier and partition: a list of buckets in ascending
count, each a FIFO (`simulator.dlist`) of the candidates that reached its count, oldest first. That is
the reference's order of (count, tick of the last change), with O(1) hooks: a hit moves its object to
the next bucket up, made when missing. The victim is the oldest unpinned object of the lowest bucket
that has one. A decay merges the buckets whose halved counts meet, by tick.

Legend: n objects, B = n + 1 buckets, P partitions, t a tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator import dlist
from simulator.jit import njit
from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView, check_range
from simulator.policies.fast import Rules, partition, register, state_class, tiers

FREE_TOP, DECAY_EVERY, STEPS_SEEN = 0, 2, 3  # par: free stack tops of tiers 0 and 1, then these
LFUState = state_class("LFUState", __name__, [
    ("prev", np.ndarray),  # (2, n + B) int64: dlist links of objects and bucket sentinels (bucket b: node n + b)
    ("nxt", np.ndarray),
    ("bprev", np.ndarray),  # (2, B + P) int64: dlist links of buckets, ascending from partition sentinels (B + p)
    ("bnxt", np.ndarray),
    ("bcount", np.ndarray),  # (2, B) int64: the count of each bucket in use
    ("bucket", np.ndarray),  # (2, n) int64: each candidate's bucket, -1 if not a candidate
    ("count", np.ndarray),  # (2, n) int64
    ("tick", np.ndarray),  # (2, n) int64: when the count last changed (the order within a bucket)
    ("free", np.ndarray),  # (2, B) int64: stacks of unused buckets
    ("par", np.ndarray),  # (4,) int64: free stack tops of both tiers, decay_every, steps seen
])


@dataclass(frozen=True)
class LFUParams:
    decay_every: int = 0  # steps between halvings of every count; 0: no decay

    def validate(self) -> LFUParams:
        check_range("decay_every", self.decay_every, 0)
        return self


class LFU(KeyedPolicy):
    name = "lfu"
    Params = LFUParams

    def __init__(self, params: LFUParams, tier: TierView) -> None:
        super().__init__(params, tier)
        self.count: dict[int, int] = {}
        self.steps = 0

    def on_step(self, step: int, layer: int, objects: Sequence[int]) -> None:
        self.steps += 1
        every = self.params.decay_every
        if every and self.steps % every == 0:
            self.count = {obj: max(1, c // 2) for obj, c in self.count.items()}

    def on_hit(self, obj: int, tick: int) -> None:
        self.count[obj] += 1
        self.keys[obj] = tick

    def on_insert(self, obj: int, tick: int) -> None:
        self.count[obj] = 1
        self.keys[obj] = tick

    def on_remove(self, obj: int) -> None:
        super().on_remove(obj)
        self.count.pop(obj, None)

    def rank(self, obj: int) -> tuple[int, ...]:
        return (self.count[obj], self.keys[obj])

    @staticmethod
    def fast_state(params: LFUParams, vram: TierView, ram: TierView | None) -> LFUState:
        n, parts = vram.num_layers * vram.num_experts, len(vram.capacity)
        buckets = n + 1  # one per candidate at most, and one more while a hit moves an object up
        links = np.arange(n + buckets, dtype=np.int64)
        order = np.arange(buckets + parts, dtype=np.int64)
        return LFUState(prev=np.stack([links, links]), nxt=np.stack([links, links]), bprev=np.stack([order, order]),
                        bnxt=np.stack([order, order]), bcount=np.zeros((2, buckets), np.int64),
                        bucket=np.full((2, n), -1, np.int64), count=np.zeros((2, n), np.int64),
                        tick=np.zeros((2, n), np.int64), free=np.stack([np.arange(buckets, dtype=np.int64)] * 2),
                        par=np.array([buckets, buckets, params.decay_every, 0], np.int64))


@njit(cache=True, _nrt=False, inline="always")
def _sentinel(ps, cs, obj):
    """The partition sentinel of `obj`'s bucket list."""
    return ps.bcount.shape[1] + partition(cs, obj)


@njit(cache=True, _nrt=False, inline="always")
def _place(ps, cs, t, obj, after):
    """Candidate `obj`, out of any bucket, joins the bucket of its count, the first of that count at or after
    bucket `after` (a sentinel: the lowest), which is made where missing."""
    n, c = ps.bucket.shape[1], ps.count[t, obj]
    buckets = ps.bcount.shape[1]
    b = ps.bnxt[t, after]
    while b < buckets and ps.bcount[t, b] < c:
        after, b = b, ps.bnxt[t, b]
    if b >= buckets or ps.bcount[t, b] != c:
        ps.par[FREE_TOP + t] -= 1
        b = ps.free[t, ps.par[FREE_TOP + t]]
        ps.bcount[t, b] = c
        dlist.reset(ps.prev[t], ps.nxt[t], n + b)
        dlist.push_front(ps.bprev[t], ps.bnxt[t], after, b)
    dlist.push_front(ps.prev[t], ps.nxt[t], n + b, obj)
    ps.bucket[t, obj] = b


@njit(cache=True, _nrt=False, inline="always")
def _unplace(ps, t, obj):
    """`obj` leaves its bucket, which is freed if that leaves it empty."""
    b = ps.bucket[t, obj]
    dlist.unlink(ps.prev[t], ps.nxt[t], obj)
    ps.bucket[t, obj] = -1
    _free_if_empty(ps, t, b)


@njit(cache=True, _nrt=False, inline="always")
def _free_if_empty(ps, t, b):
    sentinel = ps.bucket.shape[1] + b
    if ps.nxt[t, sentinel] == sentinel:
        _free(ps, t, b)


@njit(cache=True, _nrt=False, inline="always")
def _free(ps, t, b):
    dlist.unlink(ps.bprev[t], ps.bnxt[t], b)
    ps.free[t, ps.par[FREE_TOP + t]] = b
    ps.par[FREE_TOP + t] += 1


def hit(ps, cs, t, obj, tick):
    ps.count[t, obj] += 1
    ps.tick[t, obj] = tick
    b = ps.bucket[t, obj]
    if b < 0:
        _place(ps, cs, t, obj, _sentinel(ps, cs, obj))
        return
    dlist.unlink(ps.prev[t], ps.nxt[t], obj)
    _place(ps, cs, t, obj, b)  # b stays in the list until then, so that the next bucket up can be made beside it
    _free_if_empty(ps, t, b)


def insert(ps, cs, t, obj, tick):
    if ps.bucket[t, obj] >= 0:
        _unplace(ps, t, obj)
    ps.count[t, obj] = 1
    ps.tick[t, obj] = tick
    _place(ps, cs, t, obj, _sentinel(ps, cs, obj))


def remove(ps, cs, t, obj):
    if ps.bucket[t, obj] >= 0:
        _unplace(ps, t, obj)


def least(ps, cs, t, incoming):
    """The oldest unpinned candidate of the lowest bucket that has one, in `incoming`'s partition."""
    n = ps.bucket.shape[1]
    sentinel = _sentinel(ps, cs, incoming)
    b = ps.bnxt[t, sentinel]
    while b != sentinel:
        obj = queues.oldest_unpinned_at(ps, cs, t, n + b)
        if obj >= 0:
            return obj
        b = ps.bnxt[t, b]
    return -1


def age(ps, cs, step, layer, objs):
    ps.par[STEPS_SEEN] += 1
    every = ps.par[DECAY_EVERY]
    if every > 0 and ps.par[STEPS_SEEN] % every == 0:
        for t in range(tiers(cs)):
            _halve(ps, t)


@njit(cache=True, _nrt=False)
def _halve(ps, t):
    """Halve every count of tier t (never below 1): buckets whose halved counts meet merge, by tick."""
    n, buckets = ps.bucket.shape[1], ps.bcount.shape[1]
    for obj in range(n):
        if ps.bucket[t, obj] >= 0:
            ps.count[t, obj] = max(1, ps.count[t, obj] // 2)
    for sentinel in range(buckets, ps.bnxt.shape[1]):
        b = ps.bnxt[t, sentinel]
        while b != sentinel:
            ps.bcount[t, b] = max(1, ps.bcount[t, b] // 2)
            up = ps.bnxt[t, b]
            while up != sentinel and max(1, ps.bcount[t, up] // 2) == ps.bcount[t, b]:
                _merge(ps, t, n + b, n + up)
                _free(ps, t, up)
                up = ps.bnxt[t, b]
            b = up


@njit(cache=True, _nrt=False, inline="always")
def _merge(ps, t, into, other):
    """Move the FIFO at sentinel `other` into the one at `into`, keeping both in tick order (oldest first)."""
    prev, nxt = ps.prev[t], ps.nxt[t]
    at = prev[into]  # the first of `into`, oldest first, that is newer than the one moved
    obj = prev[other]
    while obj != other:
        newer = prev[obj]
        while at != into and ps.tick[t, at] < ps.tick[t, obj]:
            at = prev[at]
        older = nxt[at]  # obj goes between `older` and `at`
        prev[older], nxt[obj], prev[obj], nxt[at] = obj, older, at, obj
        ps.bucket[t, obj] = into - ps.bucket.shape[1]
        obj = newer
    dlist.reset(prev, nxt, other)


register(LFUState, Rules(on_step=age, on_hit=hit, on_insert=insert, on_remove=remove, victim=least, inline=True))
