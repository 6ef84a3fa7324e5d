"""Belady's MIN (Belady, 1966): evict the resident whose next use lies furthest in the future.

Offline: it reads ahead in the trace through `TierView.future`, the next access index of every
object, which the core keeps current from next-use arrays the trace layer computes. By default it
admits everything, as libCacheSim's `Belady` does (objects never used again go first), and no
policy that admits every miss can have fewer misses. With `bypass = 1` it also refuses an incoming
object whose next use is later than the victim's, which makes it the bound for policies that may
bypass (watermark-credit); `simulate` adds that variant as the bound column. Its fast rules scan a
layer's keys for the victim where the tier is per layer (`keyed.make_keyed`'s `scan`): each use moves
a key to wherever its next use falls, which a heap pays for at every hit.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from simulator.policies import keyed
from simulator.policies.base import KeyedPolicy, TierView, check_range
from simulator.policies.fast import NEXT, Rules, register

BYPASS = keyed.SCALARS  # keyed state scalar
BeladyState = keyed.keyed_state_class("BeladyState", __name__)


@dataclass(frozen=True)
class BeladyParams:
    bypass: int = 0  # 1: do not admit an object used later than every resident candidate

    def validate(self) -> BeladyParams:
        check_range("bypass", self.bypass, 0, 1)
        return self


class Belady(KeyedPolicy):
    name = "belady"
    Params = BeladyParams
    needs_future = True

    def _remember(self, obj: int) -> None:
        self.keys[obj] = -int(self.tier.future[obj])

    def on_hit(self, obj: int, tick: int) -> None:
        self._remember(obj)

    def on_insert(self, obj: int, tick: int) -> None:
        self._remember(obj)

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        victim = super().victim(incoming, pinned)
        if victim is not None and self.params.bypass and self.tier.future[incoming] > self.tier.future[victim]:
            return None
        return victim

    @staticmethod
    def fast_state(params: BeladyParams, vram: TierView, ram: TierView | None) -> BeladyState:
        return keyed.make_keyed(BeladyState, vram, par=(params.bypass,), scan=True)


def remember(ps, cs, t, obj, tick):
    keyed.set_key(ps, t, obj, -cs.obj[NEXT, obj])


def furthest(ps, cs, t, incoming):
    victim = keyed.victim(ps, cs, t, incoming)
    if victim >= 0 and ps.par[BYPASS] and cs.obj[NEXT, incoming] > cs.obj[NEXT, victim]:
        return -1
    return victim


register(BeladyState, Rules(on_hit=remember, on_insert=remember, on_remove=keyed.on_remove, victim=furthest))
