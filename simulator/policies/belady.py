"""Belady's MIN (Belady, 1966): evict the resident whose next use lies furthest in the future.

Offline: it reads ahead in the trace through `TierView.future`, the next access index of every
object, which the core keeps current from next-use arrays the trace layer computes. No online
policy can have fewer misses, so it is the bound every other policy is judged against. It admits
everything, as libCacheSim's `Belady` does; objects never used again go first.
"""

from __future__ import annotations

from simulator.policies.base import KeyedPolicy


class Belady(KeyedPolicy):
    name = "belady"
    code = 3
    needs_future = True

    def _remember(self, obj: int) -> None:
        self.keys[obj] = -int(self.tier.future[obj])

    def on_hit(self, obj: int, tick: int) -> None:
        self._remember(obj)

    def on_insert(self, obj: int, tick: int) -> None:
        self._remember(obj)
