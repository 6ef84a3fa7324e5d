"""Affinity (the ruvllm seed): an EMA-like score per expert; evict the lowest score.

Every step multiplies every score by `decay`; a chosen expert's score becomes min(score + 1, 1).
Because a chosen expert always lands at 1 and all scores decay alike, a score equals
decay ** (steps since the expert was last chosen), and the eviction order is that of the step
when each expert was last *chosen* (never chosen first; ties: lower id). It differs from LRU in
what refreshes an expert: routing choices only, not admissions, so a prefetched expert that is
never chosen stays cold. The affinity prefetcher uses the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.policies import keyed
from simulator.policies.base import KeyedPolicy, TierView, check_range
from simulator.policies.fast import Rules, register

AffinityState = keyed.keyed_state_class("AffinityState", __name__)  # aux[0]: the step at which each object was last chosen


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
        return keyed.make_keyed(AffinityState, vram, aux=-1)


def chosen(ps, cs, step, layer, objs):
    for obj in objs:
        ps.aux[0, obj] = step


def rank(ps, cs, t, obj, tick):
    keyed.set_key(ps, t, obj, ps.aux[0, obj])


register(AffinityState, Rules(on_step=chosen, on_hit=rank, on_insert=rank, on_remove=keyed.on_remove, victim=keyed.victim,
                             inline=True))
