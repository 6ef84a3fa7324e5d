"""Layer-aware LRU: evict from the layer that runs furthest in the future, LRU within that layer.

Layers run in a fixed cycle, so right after layer l ran, its experts are the ones needed latest:
the layer distance D = (layer - current layer) mod L orders layers exactly as Belady would order
them at layer granularity, and recency breaks the tie within a layer. This is the layer-distance
term of MoE-Infinity's priority (Xue et al., 2024) combined with LRU, as in layer-aware expert
caches; per layer it reduces to plain LRU.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulator.policies import keyed
from simulator.policies.base import KeyedPolicy, TierView
from simulator.policies.fast import PER_LAYER, Rules, register

CURRENT = 3  # keyed state scalar: the layer that ran last
LayerLRUState = keyed.keyed_state_class("LayerLRUState", __name__)


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
        return keyed.make_keyed(LayerLRUState, vram, True)


def use(ps, cs, t, obj, tick):
    keyed.set_key(ps, t, obj, tick)


def follow(ps, cs, step, layer, objs):
    ps.par[CURRENT] = layer


def furthest_layer(ps, cs, t, incoming):
    """LRU within the layer furthest ahead that has an unpinned candidate (the own layer with per-layer tiers)."""
    if cs.cfg[PER_LAYER]:
        return keyed.victim(ps, cs, t, incoming)
    layers = ps.par[keyed.LAYERS]
    for d in range(layers - 1, -1, -1):
        victim = keyed.smallest(ps, cs, t, (ps.par[CURRENT] + d) % layers)
        if victim >= 0:
            return victim
    return -1


register(LayerLRUState, Rules(on_step=follow, on_hit=use, on_insert=use, on_remove=keyed.on_remove, victim=furthest_layer))
