"""FIFO: evict the resident admitted first; hits change nothing (libCacheSim's `FIFO`)."""

from __future__ import annotations

from simulator.policies.base import KeyedPolicy


class FIFO(KeyedPolicy):
    name = "fifo"
    code = 1

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick
