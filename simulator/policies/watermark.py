"""Watermark-credit (the two-level-moe-cache seed): keep an expert in a tier while its benefit
density beats the tier's watermark.

Per expert x = (l, e): p_x is an EWMA of "x was chosen when layer l ran" (weight `alpha`), D_x the
number of layer steps until layer l runs next, and p_fuse = p_x * exp(-gamma * D_x); when the prefetcher predicts x for the next layer step, p_x is
first fused with that prediction as 1 - (1 - p_x)(1 - w), w = `lookahead_weight`. The credit of x
for this tier is b_x = p_fuse * C(x) / S(x), where C is the real time to bring x in from the tier
below (PCIe for VRAM, NVMe for RAM, from the hardware preset) and S its size; it is divided by the
tier's mean C/S so that the watermark lives on a 0..1 scale. Once per token (when the layer index
wraps) each partition's watermark takes projected subgradient steps
lambda <- max(0, lambda + eta * (demand - K) / K), where demand is the bytes of experts with
b > lambda, until demand <= K. A miss is admitted only if b > lambda, and only by evicting residents
of lower credit; so unlike the seed, capacity is never exceeded and costs do not cancel out.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.policies.base import Policy, TierView, check_range


@dataclass(frozen=True)
class WatermarkParams:
    alpha: float = 0.5  # EWMA weight of the latest observation (the seed's default)
    gamma: float = 0.02  # discount per layer step of distance (the seed's default)
    eta: float = 0.05  # watermark step size, relative to capacity
    max_iters: int = 32  # subgradient steps per token at most
    lookahead_weight: float = 0.5  # confidence given to the prefetcher's prediction when fusing

    def validate(self) -> WatermarkParams:
        check_range("alpha", self.alpha, 0.0, 1.0)
        check_range("gamma", self.gamma, 0.0)
        check_range("eta", self.eta, 0.0)
        check_range("max_iters", self.max_iters, 1)
        check_range("lookahead_weight", self.lookahead_weight, 0.0, 1.0)
        return self


def credit_density(tier: TierView) -> np.ndarray:
    """C(x) / S(x) of every object, divided by its mean."""
    density = tier.cost / tier.sizes
    return density / density.mean()


def distance_discount(gamma: float, num_layers: int) -> np.ndarray:
    """exp(-gamma * D) for D = 0 .. L-1 (one table, so both implementations use the same floats)."""
    return np.exp(-gamma * np.arange(num_layers, dtype=np.float64))


class WatermarkCredit(Policy):
    name = "watermark"
    code = 6
    Params = WatermarkParams

    def __init__(self, params: WatermarkParams, tier: TierView) -> None:
        super().__init__(params, tier)
        n = tier.num_layers * tier.num_experts
        self.p = np.zeros(n, np.float64)
        self.density = credit_density(tier)
        self.discount = distance_discount(params.gamma, tier.num_layers)
        self.watermark = np.zeros(len(tier.capacity), np.float64)
        self.resident: set[int] = set()
        self.current = -1
        self.step = -1
        self.hinted = np.full(n, -1, np.int64)  # step at which the prefetcher last predicted each object

    def credit(self, obj: int) -> float:
        distance = (self.tier.layer_of(obj) - self.current) % self.tier.num_layers
        p = self.p[obj]
        if self.hinted[obj] == self.step:
            p = 1.0 - (1.0 - p) * (1.0 - self.params.lookahead_weight)
        return p * self.discount[distance] * self.density[obj]

    def on_hint(self, step: int, objects: Sequence[int]) -> None:
        self.hinted[list(objects)] = step

    def on_step(self, step: int, layer: int, objects: Sequence[int]) -> None:
        new_token = layer <= self.current
        self.current = layer
        self.step = step
        e = self.tier.num_experts
        alpha = self.params.alpha
        chosen = set(int(x) for x in objects)
        for obj in range(layer * e, (layer + 1) * e):
            self.p[obj] = (1.0 - alpha) * self.p[obj] + (alpha if obj in chosen else 0.0)
        if new_token or step == 0:
            for part in range(len(self.watermark)):
                self._adapt(part)

    def _adapt(self, part: int) -> None:
        tier = self.tier
        e = tier.num_experts
        objects = range(part * e, (part + 1) * e) if tier.per_layer else range(tier.num_layers * e)
        credits = [(self.credit(obj), int(tier.sizes[obj])) for obj in objects]
        capacity = float(tier.capacity[part])
        for _ in range(self.params.max_iters):
            demand = sum(size for credit, size in credits if credit > self.watermark[part])
            step = self.params.eta * (demand - capacity) / capacity
            self.watermark[part] = max(0.0, self.watermark[part] + step)
            if demand <= capacity:
                break

    def on_insert(self, obj: int, tick: int) -> None:
        self.resident.add(obj)

    def on_remove(self, obj: int) -> None:
        self.resident.discard(obj)

    def admit(self, obj: int) -> bool:
        return self.credit(obj) > self.watermark[self.tier.partition(obj)]

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        best: tuple[float, int] | None = None
        for obj in self.resident:
            if obj in pinned or not self.tier.same_partition(obj, incoming):
                continue
            candidate = (self.credit(obj), obj)
            if best is None or candidate < best:
                best = candidate
        if best is None or best[0] >= self.credit(incoming):
            return None
        return best[1]
