"""FIFO: evict the resident admitted first; hits change nothing (libCacheSim's `FIFO`)."""

from __future__ import annotations

from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView
from simulator.policies.fast import Rules, register, state_class
from simulator.policies.lru import ONE_LIST, leave, oldest, one_list_state

FIFOState = state_class("FIFOState", __name__, ONE_LIST)


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
