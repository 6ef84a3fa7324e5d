"""Layer-aware LRU: evict from the layer that runs furthest in the future, LRU within that layer.

Layers run in a fixed cycle, so right after layer l ran, its experts are the ones needed latest:
the layer distance D = (layer - current layer) mod L orders layers exactly as Belady would order
them at layer granularity, and recency breaks the tie within a layer. This is the layer-distance
term of MoE-Infinity's priority (Xue et al., 2024) combined with LRU, as in layer-aware expert
caches; per layer it reduces to plain LRU. The fast rules keep one recency list per layer (in each
partition and tier, `simulator.policies.queues`), so a use is O(1) and the victim is the oldest
unpinned object of the furthest layer's list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.policies import queues
from simulator.policies.base import KeyedPolicy, TierView
from simulator.policies.fast import EXPERTS, LAYERS, PER_LAYER, Rules, partition, register, state_class
from simulator.policies.lru import leave

LayerLRUState = state_class("LayerLRUState", __name__, [
    ("prev", np.ndarray),  # (2, n + L*P) int64: one recency list per layer and partition, see queues
    ("nxt", np.ndarray),
    ("queue", np.ndarray),  # (2, n) int64: the object's layer while in a list, -1 not
    ("used", np.ndarray),  # (2, P, L) int64
    ("current", np.ndarray),  # (1,) int64: the layer that ran last
])


class LayerLRU(KeyedPolicy):
    name = "layer-lru"

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

    @staticmethod
    def fast_state(params: object, vram: TierView, ram: TierView | None) -> LayerLRUState:
        n, layers, parts = vram.num_layers * vram.num_experts, vram.num_layers, len(vram.capacity)
        return LayerLRUState(*queues.links(n, parts, layers), queue=np.full((2, n), -1, np.int64),
                             used=np.zeros((2, parts, layers), np.int64), current=np.zeros(1, np.int64))


def use(ps, cs, t, obj, tick):
    if ps.queue[t, obj] >= 0:
        queues.drop(ps, cs, t, obj)
    queues.add(ps, cs, t, obj, obj // cs.cfg[EXPERTS])


def follow(ps, cs, step, layer, objs):
    ps.current[0] = layer


def furthest_layer(ps, cs, t, incoming):
    """The oldest unpinned object of the layer furthest ahead that has one (the own layer with per-layer
    tiers)."""
    part = partition(cs, incoming)
    if cs.cfg[PER_LAYER]:
        return queues.oldest_unpinned(ps, cs, t, part, incoming // cs.cfg[EXPERTS])
    layers = cs.cfg[LAYERS]
    for d in range(layers - 1, -1, -1):
        layer = ps.current[0] + d
        victim = queues.oldest_unpinned(ps, cs, t, part, layer - layers if layer >= layers else layer)
        if victim >= 0:
            return victim
    return -1


register(LayerLRUState, Rules(on_step=follow, on_hit=use, on_insert=use, on_remove=leave, victim=furthest_layer))
