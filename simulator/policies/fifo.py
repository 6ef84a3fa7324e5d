"""FIFO: evict the resident admitted first; hits change nothing (libCacheSim's `FIFO`)."""

from __future__ import annotations

import numpy as np

from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView
from simulator.policies.fast import Rules, register, state_class
from simulator.policies.lru import leave, oldest, one_list_state

FIFOState = state_class("FIFOState", __name__, [
    ("prev", np.ndarray),  # (2, n + P) int64: see simulator.policies.queues (one list per partition)
    ("nxt", np.ndarray),
    ("queue", np.ndarray),
    ("used", np.ndarray),
])


class FIFO(KeyedPolicy):
    name = "fifo"

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    @staticmethod
    def fast_state(params: object, vram: TierView, ram: TierView | None) -> FIFOState:
        return one_list_state(FIFOState, vram)


def insert(ps, cs, t, obj, tick):
    queues.add(ps, cs, t, obj, 0)


register(FIFOState, Rules(on_insert=insert, on_remove=leave, victim=oldest))
