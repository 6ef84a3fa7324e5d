"""Belady's MIN (Belady, 1966): evict the resident whose next use lies furthest in the future.

Offline: it reads ahead in the trace through `TierView.future`, the next access index of every
object, which the core keeps current from next-use arrays the trace layer computes. By default it
admits everything, as libCacheSim's `Belady` does (objects never used again go first), and no
policy that admits every miss can have fewer misses. With `bypass = 1` it also refuses an incoming
object whose next use is later than the victim's, which makes it the bound for policies that may
bypass (watermark-credit); `simulate` adds that variant as the bound column.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from simulator.policies.base import KeyedPolicy, check_range


@dataclass(frozen=True)
class BeladyParams:
    bypass: int = 0  # 1: do not admit an object used later than every resident candidate

    def validate(self) -> BeladyParams:
        check_range("bypass", self.bypass, 0, 1)
        return self


class Belady(KeyedPolicy):
    name = "belady"
    code = 3
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
