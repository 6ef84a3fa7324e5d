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

The victim is found in two stages, which both implementations share: in each layer, the candidate of
least weight p_fuse * C/S (the credit without the layer's common discount; ties: lower id), then among
those the one of least credit. This is the least credit overall, but it lets the fast rules cache each
layer's least-weight candidate, which changes only when its layer runs, is hinted, or loses or gains a
candidate, instead of scanning every resident per eviction.
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
STALE = -2  # a layer's least-weight candidate must be found again
MAX_ITERS, CURRENT, STEP, EXPERTS, LAYERS = range(5)  # fast state integers
WatermarkState = state_class("WatermarkState", __name__, [
    ("p", np.ndarray),  # (n,) float64 EWMA of being chosen
    ("dens", np.ndarray),  # (2, n) float64 C/S over its mean, per tier
    ("disc", np.ndarray),  # (L,) float64 exp(-gamma * D)
    ("lam", np.ndarray),  # (2, P) float64 watermarks
    ("fp", np.ndarray),  # (3,) float64 parameters above
    ("hinted", np.ndarray),  # (n,) int64 step at which the prefetcher last predicted each object
    ("mark", np.ndarray),  # (n,) int64 step at which each object was last chosen
    ("slot", np.ndarray),  # (2, n) int64 index of each candidate (resident and evictable) in its layer's list, -1 none
    ("members", np.ndarray),  # (2, L, E) int64 each layer's candidates, in no order
    ("count", np.ndarray),  # (2, L) int64 candidates per layer
    ("light", np.ndarray),  # (2, L) int64 each layer's least-weight candidate, -1 none, -2 to be found again
    ("hint_step", np.ndarray),  # (L,) int64 step at which each layer last had a hinted object
    ("credits", np.ndarray),  # (n,) float64 scratch: a partition's credits while its watermark adapts
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

    def fused(self, obj: int) -> float:
        p = self.p[obj]
        if self.hinted[obj] == self.step:
            p = 1.0 - (1.0 - p) * (1.0 - self.params.lookahead_weight)
        return p

    def credit(self, obj: int) -> float:
        distance = (self.tier.layer_of(obj) - self.current) % self.tier.num_layers
        return self.fused(obj) * self.discount[distance] * self.density[obj]

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
        lightest: dict[int, tuple[float, int]] = {}
        for obj in self.resident:
            if obj in pinned or not self.tier.same_partition(obj, incoming):
                continue
            layer, weight = self.tier.layer_of(obj), (self.fused(obj) * self.density[obj], obj)
            if layer not in lightest or weight < lightest[layer]:
                lightest[layer] = weight
        if not lightest:
            return None
        best = min((self.credit(obj), obj) for _, obj in lightest.values())
        if best[0] >= self.credit(incoming):
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
                              slot=np.full((2, n), -1, np.int64),
                              members=np.zeros((2, vram.num_layers, vram.num_experts), np.int64),
                              count=np.zeros((2, vram.num_layers), np.int64),
                              light=np.full((2, vram.num_layers), STALE, np.int64),
                              hint_step=np.full(vram.num_layers, -1, np.int64), credits=np.zeros(n),
                              par=np.array([params.max_iters, -1, -1, vram.num_experts, vram.num_layers], np.int64))


@njit(cache=True, _nrt=False)
def fused(ps, obj):
    p = ps.p[obj]
    if ps.hinted[obj] == ps.par[STEP]:
        p = 1.0 - (1.0 - p) * (1.0 - ps.fp[LOOKAHEAD_WEIGHT])
    return p


@njit(cache=True, _nrt=False)
def discount(ps, layer):
    distance = layer - ps.par[CURRENT]  # mod L without a division: this runs for every layer per eviction
    return ps.disc[distance + ps.par[LAYERS] if distance < 0 else distance]


@njit(cache=True, _nrt=False)
def fast_credit(ps, t, obj):
    return fused(ps, obj) * discount(ps, obj // ps.par[EXPERTS]) * ps.dens[t, obj]


@njit(cache=True, _nrt=False)
def weight(ps, t, obj):
    return fused(ps, obj) * ps.dens[t, obj]


@njit(cache=True, _nrt=False)
def lighter(wa, a, wb, b):
    """Whether candidate a (weight wa) weighs less than b (-1: none)."""
    return b < 0 or wa < wb or (wa == wb and a < b)


@njit(cache=True, _nrt=False)
def lightest(ps, cs, t, layer):
    """The layer's least-weight unpinned candidate in tier t, -1 if none; cached while nothing changes it
    (pins only ever hold the current step's objects, all of the current layer, which is never cached)."""
    if layer != ps.par[CURRENT] and ps.light[t, layer] != STALE:
        return ps.light[t, layer]
    best, bw = -1, 0.0
    for i in range(ps.count[t, layer]):
        obj = ps.members[t, layer, i]
        w = weight(ps, t, obj)
        if lighter(w, obj, bw, best) and not pinned(cs, t, obj):
            best, bw = obj, w
    if layer != ps.par[CURRENT]:
        ps.light[t, layer] = best
    return best


@njit(cache=True, _nrt=False)
def stale(ps, layer):
    ps.light[0, layer] = STALE
    ps.light[1, layer] = STALE


@njit(cache=True, _nrt=False)
def fast_adapt(ps, cs, t, part):
    e = ps.par[EXPERTS]
    lo, hi = partition_range(cs, part * e)
    capacity = float(cs.part[CAP + t, part])
    for layer in range(lo // e, hi // e):  # credits stay fixed while the watermark moves: computed once
        d = discount(ps, layer)
        for obj in range(layer * e, (layer + 1) * e):  # no hint is fused yet: they come after the accesses
            ps.credits[obj] = ps.p[obj] * d * ps.dens[t, obj]
    for _ in range(ps.par[MAX_ITERS]):
        demand = 0
        lam = ps.lam[t, part]
        for obj in range(lo, hi):
            demand += cs.obj[SIZE, obj] if ps.credits[obj] > lam else 0
        ps.lam[t, part] = max(0.0, ps.lam[t, part] + ps.fp[ETA] * (demand - capacity) / capacity)
        if demand <= capacity:
            break


def observe(ps, cs, step, layer, objs):
    new_token = layer <= ps.par[CURRENT]
    for hinted in range(ps.hint_step.shape[0]):
        if ps.hint_step[hinted] == ps.par[STEP]:  # their fused weights lapse now
            stale(ps, hinted)
    ps.par[CURRENT] = layer
    ps.par[STEP] = step
    stale(ps, layer)
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
    e = ps.par[EXPERTS]
    for obj in objs:
        ps.hinted[obj] = step
        ps.hint_step[obj // e] = step
        stale(ps, obj // e)


def enter(ps, cs, t, obj, tick):
    layer = obj // ps.par[EXPERTS]
    if ps.slot[t, obj] >= 0:
        return
    i = ps.count[t, layer]
    ps.members[t, layer, i] = obj
    ps.slot[t, obj] = i
    ps.count[t, layer] = i + 1
    best = ps.light[t, layer]
    if best != STALE and (best < 0 or lighter(weight(ps, t, obj), obj, weight(ps, t, best), best)):
        ps.light[t, layer] = obj


def leave(ps, cs, t, obj):
    i = ps.slot[t, obj]
    if i < 0:
        return
    layer = obj // ps.par[EXPERTS]
    last = ps.count[t, layer] - 1
    moved = ps.members[t, layer, last]
    ps.members[t, layer, i] = moved
    ps.slot[t, moved] = i
    ps.slot[t, obj] = -1
    ps.count[t, layer] = last
    if ps.light[t, layer] == obj:
        ps.light[t, layer] = STALE


def above_watermark(ps, cs, t, obj):
    return fast_credit(ps, t, obj) > ps.lam[t, partition(cs, obj)]


def lowest_credit(ps, cs, t, incoming):
    e = ps.par[EXPERTS]
    lo, hi = partition_range(cs, incoming)
    best, best_credit = -1, 0.0
    for layer in range(lo // e, hi // e):
        obj = lightest(ps, cs, t, layer)
        if obj >= 0:
            c = fast_credit(ps, t, obj)
            if best < 0 or c < best_credit or (c == best_credit and obj < best):
                best, best_credit = obj, c
    if best < 0 or best_credit >= fast_credit(ps, t, incoming):
        return -1
    return best


register(WatermarkState, Rules(on_step=observe, on_hint=hint, on_insert=enter, on_remove=leave,
                               admit=above_watermark, victim=lowest_credit))
