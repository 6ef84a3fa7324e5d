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

from simulator.jit import njit
from simulator.policies.base import Policy, TierView, check_range
from simulator.policies.fast import CAP, SIZE, Rules, partition, partition_range, pinned, register, \
    state_class, tiers

ALPHA, ETA, LOOKAHEAD_WEIGHT = range(3)  # fast state floats
MAX_ITERS, CURRENT, STEP, EXPERTS, LAYERS = range(5)  # fast state integers
WatermarkState = state_class("WatermarkState", __name__, [
    ("p", np.ndarray),  # (n,) float64 EWMA of being chosen
    ("dens", np.ndarray),  # (2, n) float64 C/S over its mean, per tier
    ("disc", np.ndarray),  # (L,) float64 exp(-gamma * D)
    ("lam", np.ndarray),  # (2, P) float64 watermarks
    ("fp", np.ndarray),  # (3,) float64 parameters above
    ("hinted", np.ndarray),  # (n,) int64 step at which the prefetcher last predicted each object
    ("mark", np.ndarray),  # (n,) int64 step at which each object was last chosen
    ("cand", np.ndarray),  # (2, n) bool resident and evictable
    ("par", np.ndarray),  # (5,) int64 integers above
])


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

    @staticmethod
    def fast_state(params: WatermarkParams, vram: TierView, ram: TierView | None) -> WatermarkState:
        n = vram.num_layers * vram.num_experts
        return WatermarkState(p=np.zeros(n), dens=np.stack([credit_density(vram), credit_density(ram or vram)]),
                              disc=distance_discount(params.gamma, vram.num_layers),
                              lam=np.zeros((2, len(vram.capacity))),
                              fp=np.array([params.alpha, params.eta, params.lookahead_weight]),
                              hinted=np.full(n, -1, np.int64), mark=np.full(n, -1, np.int64),
                              cand=np.zeros((2, n), np.bool_),
                              par=np.array([params.max_iters, -1, -1, vram.num_experts, vram.num_layers], np.int64))


@njit(cache=True, _nrt=False)
def fast_credit(ps, t, obj):
    distance = (obj // ps.par[EXPERTS] - ps.par[CURRENT]) % ps.par[LAYERS]
    p = ps.p[obj]
    if ps.hinted[obj] == ps.par[STEP]:
        p = 1.0 - (1.0 - p) * (1.0 - ps.fp[LOOKAHEAD_WEIGHT])
    return p * ps.disc[distance] * ps.dens[t, obj]


@njit(cache=True, _nrt=False)
def fast_adapt(ps, cs, t, part):
    lo, hi = partition_range(cs, part * ps.par[EXPERTS])
    capacity = float(cs.part[CAP + t, part])
    for _ in range(ps.par[MAX_ITERS]):
        demand = 0
        for obj in range(lo, hi):
            if fast_credit(ps, t, obj) > ps.lam[t, part]:
                demand += cs.obj[SIZE, obj]
        ps.lam[t, part] = max(0.0, ps.lam[t, part] + ps.fp[ETA] * (demand - capacity) / capacity)
        if demand <= capacity:
            break


def observe(ps, cs, step, layer, objs):
    new_token = layer <= ps.par[CURRENT]
    ps.par[CURRENT] = layer
    ps.par[STEP] = step
    for obj in objs:
        ps.mark[obj] = step
    e = ps.par[EXPERTS]
    alpha = ps.fp[ALPHA]
    for obj in range(layer * e, (layer + 1) * e):
        ps.p[obj] = (1.0 - alpha) * ps.p[obj] + (alpha if ps.mark[obj] == step else 0.0)
    if new_token or step == 0:
        for t in range(tiers(cs)):
            for part in range(ps.lam.shape[1]):
                fast_adapt(ps, cs, t, part)


def hint(ps, cs, step, layer, objs):
    for obj in objs:
        ps.hinted[obj] = step


def enter(ps, cs, t, obj, tick):
    ps.cand[t, obj] = True


def leave(ps, cs, t, obj):
    ps.cand[t, obj] = False


def above_watermark(ps, cs, t, obj):
    return fast_credit(ps, t, obj) > ps.lam[t, partition(cs, obj)]


def lowest_credit(ps, cs, t, incoming):
    lo, hi = partition_range(cs, incoming)
    best, best_credit = -1, 0.0
    for obj in range(lo, hi):
        if ps.cand[t, obj] and not pinned(cs, t, obj):
            c = fast_credit(ps, t, obj)
            if best < 0 or c < best_credit:
                best, best_credit = obj, c
    if best < 0 or best_credit >= fast_credit(ps, t, incoming):
        return -1
    return best


register(WatermarkState, Rules(on_step=observe, on_hint=hint, on_insert=enter, on_remove=leave,
                               admit=above_watermark, victim=lowest_credit))
