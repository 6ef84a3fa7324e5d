"""LRU: evict the resident used longest ago (Mattson et al., 1970; libCacheSim's `LRU`).

An insertion counts as a use, as in libCacheSim, so a prefetched expert starts as most recent.
Per layer (mixtral-offloading) or global is a property of the tier, not of the policy.
"""

from __future__ import annotations

from simulator.policies.base import KeyedPolicy


class LRU(KeyedPolicy):
    name = "lru"
    code = 0

    def on_hit(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick
