"""LRU: evict the resident used longest ago (Mattson et al., 1970; libCacheSim's `LRU`).

An insertion counts as a use, as in libCacheSim, so a prefetched expert starts as most recent.
Per layer (mixtral-offloading) or global is a property of the tier, not of the policy. The fast
rules keep each partition's residents in one recency list (`simulator.policies.queues`), which
orders them as the reference's ticks do, with O(1) updates.
"""

from __future__ import annotations

import numpy as np

from simulator.jit import njit
from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView
from simulator.policies.fast import Rules, partition, register, state_class

ONE_LIST = [  # the state of one list per partition and tier (LRU, FIFO, affinity)
    ("prev", np.ndarray),  # (2, n + P) int64: see simulator.policies.queues
    ("nxt", np.ndarray),
    ("queue", np.ndarray),  # (2, n) int64: 0 in the list, -1 not
    ("used", np.ndarray),  # (2, P, 1) int64
]
LRUState = state_class("LRUState", __name__, ONE_LIST)


class LRU(KeyedPolicy):
    name = "lru"

    def on_hit(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    @staticmethod
    def fast_state(params: object, vram: TierView, ram: TierView | None) -> LRUState:
        return one_list_state(LRUState, vram)


def one_list_state(cls: type, vram: TierView, **more: np.ndarray) -> tuple:
    """An empty state of one list per partition and tier (LRU, FIFO, affinity) and the policy's `more` fields."""
    n, parts = vram.num_layers * vram.num_experts, len(vram.capacity)
    return cls(*queues.links(n, parts, 1), queue=np.full((2, n), -1, np.int64),
               used=np.zeros((2, parts, 1), np.int64), **more)


def use(ps, cs, t, obj, tick):
    if ps.queue[t, obj] >= 0:
        queues.drop(ps, cs, t, obj)
    queues.add(ps, cs, t, obj, 0)


@njit(cache=True, _nrt=False)
def leave(ps, cs, t, obj):
    queues.drop(ps, cs, t, obj)


@njit(cache=True, _nrt=False)
def oldest(ps, cs, t, incoming):
    return queues.oldest_unpinned(ps, cs, t, partition(cs, incoming), 0)


register(LRUState, Rules(on_hit=use, on_insert=use, on_remove=leave, victim=oldest))
