"""LFU: evict the resident used least often; among equals, the one whose count changed longest ago.

This is libCacheSim's `LFU` (frequency buckets, FIFO within a bucket, counts forgotten on eviction):
an object enters at count 1 and each hit adds 1. With `decay_every = n > 0`, every n steps all
counts are halved (never below 1), so that past popularity fades, like LFU with aging
(Arlitt et al., 2000); 0 turns decay off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simulator.policies.base import KeyedPolicy, TierView, check_range


@dataclass(frozen=True)
class LFUParams:
    decay_every: int = 0  # steps between halvings of every count; 0: no decay

    def validate(self) -> LFUParams:
        check_range("decay_every", self.decay_every, 0)
        return self


class LFU(KeyedPolicy):
    name = "lfu"
    code = 2
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
