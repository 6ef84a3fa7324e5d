"""Layer-aware LRU: evict from the layer that runs furthest in the future, LRU within that layer.

Layers run in a fixed cycle, so right after layer l ran, its experts are the ones needed latest:
the layer distance D = (layer - current layer) mod L orders layers exactly as Belady would order
them at layer granularity, and recency breaks the tie within a layer. This is the layer-distance
term of MoE-Infinity's priority (Xue et al., 2024) combined with LRU, as in layer-aware expert
caches; per layer it reduces to plain LRU.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulator.policies.base import KeyedPolicy, TierView


class LayerLRU(KeyedPolicy):
    name = "layer-lru"
    code = 5

    def __init__(self, params: object, tier: TierView) -> None:
        super().__init__(params, tier)
        self.current = 0

    def on_step(self, step: int, layer: int, objects: Sequence[int]) -> None:
        self.current = layer

    def on_hit(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    def on_insert(self, obj: int, tick: int) -> None:
        self.keys[obj] = tick

    def rank(self, obj: int) -> tuple[int, ...]:
        distance = (self.tier.layer_of(obj) - self.current) % self.tier.num_layers
        return (-distance, self.keys[obj])
