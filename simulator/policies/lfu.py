"""LFU: evict the resident used least often; among equals, the one whose count changed longest ago.

This is libCacheSim's `LFU` (frequency buckets, FIFO within a bucket, counts forgotten on eviction):
an object enters at count 1 and each hit adds 1. With `decay_every = n > 0`, every n steps all
counts are halved (never below 1), so that past popularity fades, like LFU with aging
(Arlitt et al., 2000); 0 turns decay off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.policies import keyed
from simulator.policies.base import KeyedPolicy, TierView, check_range
from simulator.policies.fast import Rules, register, tiers

COUNT_SHIFT = 40  # fast key: count << 40 | tick, the order of (count, tick)
DECAY_EVERY, STEPS_SEEN = 3, 4  # keyed state scalars
LFUState = keyed.keyed_state_class("LFUState", __name__)


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
        return keyed.make_keyed(LFUState, vram, par=(params.decay_every, 0))


def age(ps, cs, step, layer, objs):
    ps.par[STEPS_SEEN] += 1
    every = ps.par[DECAY_EVERY]
    if every > 0 and ps.par[STEPS_SEEN] % every == 0:
        for t in range(tiers(cs)):
            for obj in range(ps.key.shape[1]):
                if keyed.candidate(ps, t, obj):
                    ps.aux[t, obj] = max(1, ps.aux[t, obj] // 2)
                    tick = ps.key[t, obj] & ((np.int64(1) << COUNT_SHIFT) - 1)
                    ps.key[t, obj] = (ps.aux[t, obj] << COUNT_SHIFT) | tick
            for h in range(ps.hn.shape[1]):
                keyed.rebuild(ps, t, h)


def hit(ps, cs, t, obj, tick):
    ps.aux[t, obj] += 1
    keyed.raise_key(ps, t, obj, (ps.aux[t, obj] << COUNT_SHIFT) | tick)


def insert(ps, cs, t, obj, tick):
    ps.aux[t, obj] = 1
    keyed.set_key(ps, t, obj, (np.int64(1) << COUNT_SHIFT) | tick)


register(LFUState, Rules(on_step=age, on_hit=hit, on_insert=insert, on_remove=keyed.on_remove,
                        victim=keyed.raised_victim))
