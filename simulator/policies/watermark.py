"""Watermark-credit (the two-level-moe-cache seed): keep an expert in a tier while its benefit
density beats the tier's watermark.

Per expert x = (l, e): p_x is an EWMA of "x was chosen when layer l ran" (weight `alpha`), D_x the
number of layer steps until layer l runs next, and p_fuse = p_x * exp(-gamma * D_x); when the
prefetcher predicts x for the next layer step, p_x is first fused with that prediction as
1 - (1 - p_x)(1 - w), w = `lookahead_weight`. The credit of x for this tier is
b_x = p_fuse * C(x) / S(x), where C is the real time to bring x in from the tier below (PCIe for
VRAM, NVMe for RAM, from the hardware preset) and S its size; it is divided by the tier's mean C/S
so that the watermark lives on a 0..1 scale. Once per token (when the layer index
wraps) each partition's watermark takes projected subgradient steps
lambda <- max(0, lambda + eta * (demand - K) / K), where demand is the bytes of experts with
b > lambda, until demand <= K. A miss is admitted only if b > lambda, and only by evicting residents
of lower credit; so unlike the seed, capacity is never exceeded and costs do not cancel out.

The victim is found in two stages, which both implementations share: in each layer, the candidate of
least weight p * C/S (p fused with a hint; the credit without the layer's common discount; ties: lower
id), then among those the one of least credit, computed as weight * exp(-gamma * D) in that order by
both. This is the least credit overall, but it lets the fast rules cache each layer's least-weight
candidate, which changes only when its layer runs, is hinted, or loses or gains a candidate (the
current layer's also when the pins move), instead of scanning every resident per eviction. The fast
rules keep every object's weight current and find a layer's least in passes over the keys' bits that
vectorise (`scan`); with one partition for all layers they also keep each layer's candidate's credit
current (all of them once per step, as the discounts move) and list the layers whose candidate is to
be found again, so that an eviction scans those and takes the least of the credits, rather than
visiting every layer; every watermark moves once per token over contiguous credits (`fast_adapt`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.jit import njit
from simulator.policies.base import Policy, TierView, check_range
from simulator.policies.fast import CAP, SIZE, STAMP, UNPINNED, Rules, partition, partition_range, pinned, \
    register, state_class, tiers

ALPHA, ETA, LOOKAHEAD_WEIGHT = range(3)  # fast state floats
STALE = -2  # a layer's least-weight candidate must be found again
NONE = 1e300  # the weight of no candidate: finite, so that times a discount of 0 it stays a number
NONE_BITS = np.float64(NONE).view(np.int64)  # its bits: weights are never negative, so bits order as values do
MAX_ITERS, CURRENT, STEP, EXPERTS, LAYERS, GLOBAL = range(6)  # fast state integers
WatermarkState = state_class("WatermarkState", __name__, [
    ("p", np.ndarray),  # (n,) float64 EWMA of being chosen
    ("dens", np.ndarray),  # (2, n) float64 C/S over its mean, per tier
    ("disc", np.ndarray),  # (2L,) float64 exp(-gamma * D) for D = 0 .. L-1, twice: D of layer l is at l - current + L
    ("lam", np.ndarray),  # (2, P) float64 watermarks
    ("fp", np.ndarray),  # (3,) float64 parameters above
    ("hinted", np.ndarray),  # (n,) int64 step at which the prefetcher last predicted each object
    ("mark", np.ndarray),  # (n,) int64 step at which each object was last chosen
    ("w", np.ndarray),  # (2, n) float64 each object's weight p * C/S in each tier (p fused with a hint), kept current
    ("key", np.ndarray),  # (2, n) float64 the weight of each candidate (resident and evictable) per tier, else NONE
    ("light", np.ndarray),  # (2, L) int64 each layer's least-weight candidate, -1 none, -2 to be found again
    ("lw", np.ndarray),  # (2, L) float64 its weight, NONE if none
    ("lc", np.ndarray),  # (2, L) float64 its credit, NONE if none, kept current with one partition for all layers
    ("todo", np.ndarray),  # (2, L) int64 with one partition: the layers whose lightest is to be found again
    ("ntodo", np.ndarray),  # (2,) int64 how many there are
    ("seen", np.ndarray),  # (2,) int64 pin stamp under which the current layer's lightest was found, per tier
    ("hint_step", np.ndarray),  # (L,) int64 step at which each layer last had a hinted object
    ("credits", np.ndarray),  # (n,) float64 scratch: a partition's credits while its watermark adapts
    ("par", np.ndarray),  # (6,) int64 integers above
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
        return self.fused(obj) * self.density[obj] * self.discount[distance]

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
                              disc=np.tile(distance_discount(params.gamma, vram.num_layers), 2),
                              lam=np.zeros((2, len(vram.capacity))),
                              fp=np.array([params.alpha, params.eta, params.lookahead_weight]),
                              hinted=np.full(n, -1, np.int64), mark=np.full(n, -1, np.int64),
                              w=np.zeros((2, n)), key=np.full((2, n), NONE),
                              light=np.full((2, vram.num_layers), STALE, np.int64),
                              lw=np.full((2, vram.num_layers), NONE), lc=np.full((2, vram.num_layers), NONE),
                              todo=np.tile(np.arange(vram.num_layers), (2, 1)),
                              ntodo=np.full(2, vram.num_layers, np.int64),
                              seen=np.full(2, UNPINNED, np.int64),
                              hint_step=np.full(vram.num_layers, -1, np.int64), credits=np.zeros(n),
                              par=np.array([params.max_iters, -1, -1, vram.num_experts, vram.num_layers,
                                            not vram.per_layer], np.int64))


@njit(cache=True, _nrt=False, inline="always")
def fused(ps, obj):
    p = ps.p[obj]
    if ps.hinted[obj] == ps.par[STEP]:
        p = 1.0 - (1.0 - p) * (1.0 - ps.fp[LOOKAHEAD_WEIGHT])
    return p


@njit(cache=True, _nrt=False, inline="always")
def discount(ps, layer):
    return ps.disc[layer - ps.par[CURRENT] + ps.par[LAYERS]]  # mod L without a division or a branch


@njit(cache=True, _nrt=False, inline="always")
def fast_credit(ps, t, obj):
    return ps.w[t, obj] * discount(ps, obj // ps.par[EXPERTS])


@njit(cache=True, _nrt=False, inline="always")
def light_credit(ps, t, layer):
    """The credit of the layer's lightest candidate in tier t under the current layer, NONE if it has none."""
    return ps.lw[t, layer] * discount(ps, layer) if ps.light[t, layer] >= 0 else NONE


@njit(cache=True, _nrt=False, inline="always")
def forget(ps, t, layer):
    """The layer's least-weight candidate in tier t is to be found again; with one partition, list the layer once."""
    if ps.light[t, layer] != STALE:
        ps.light[t, layer] = STALE
        if ps.par[GLOBAL]:
            ps.todo[t, ps.ntodo[t]] = layer
            ps.ntodo[t] += 1


@njit(cache=True, _nrt=False, inline="always")
def reweigh(ps, layer):
    """Weigh the layer's objects again from p (new, or its hints lapsed); its least-weight candidates are found
    again."""
    e = ps.par[EXPERTS]
    p = ps.p[layer * e:(layer + 1) * e]
    for t in range(2):
        w, key, dens = ps.w[t, layer * e:(layer + 1) * e], ps.key[t, layer * e:(layer + 1) * e], \
            ps.dens[t, layer * e:(layer + 1) * e]
        for i in range(e):
            w[i] = p[i] * dens[i]
            key[i] = NONE if key[i] == NONE else w[i]
        forget(ps, t, layer)


@njit(cache=True, _nrt=False, inline="always")
def scan(ps, cs, t, layer):
    """The layer's least-weight unpinned candidate in tier t, -1 if none, and its weight (NONE if none).
    The least key and its lowest holder come from two integer minimum passes over the keys' bits, which
    vectorise. Only if that one is pinned (the current step's objects, just chosen, are rarely the lightest)
    a full scan skips the pinned."""
    e = ps.par[EXPERTS]
    lo = layer * e
    bits = ps.key[t, lo:lo + e].view(np.int64)
    least = NONE_BITS
    for i in range(e):
        least = min(least, bits[i])
    if least == NONE_BITS:
        return -1, NONE
    i = e
    for j in range(e):
        i = min(i, j if bits[j] == least else e)
    if not pinned(cs, t, lo + i):
        return lo + i, ps.key[t, lo + i]
    best, weight = -1, NONE
    for i in range(e):
        if ps.key[t, lo + i] < weight and not pinned(cs, t, lo + i):
            best, weight = lo + i, ps.key[t, lo + i]
    return best, weight


@njit(cache=True, _nrt=False, inline="always")
def offer(ps, cs, t, obj):
    """Candidate obj (new, or its weight changed) becomes its layer's known least-weight candidate if it weighs
    less (ties: lower id) and is not pinned; nothing changes while the layer's is to be found again."""
    layer = obj // ps.par[EXPERTS]
    best, w = ps.light[t, layer], ps.w[t, obj]
    if best != STALE and (best < 0 or w < ps.lw[t, layer] or (w == ps.lw[t, layer] and obj < best)) \
            and not pinned(cs, t, obj):
        ps.light[t, layer] = obj
        ps.lw[t, layer] = w
        ps.lc[t, layer] = w * discount(ps, layer)


@njit(cache=True, _nrt=False)
def fast_adapt(ps, cs, t, part):
    e = ps.par[EXPERTS]
    lo, hi = partition_range(cs, part * e)
    capacity = float(cs.part[CAP + t, part])
    credits, sizes = ps.credits[lo:hi], cs.obj[SIZE, lo:hi]
    lam = ps.lam[t, part]
    demand = 0
    for layer in range(lo // e, hi // e):  # credits stay fixed while the watermark moves: computed once, with
        d = discount(ps, layer)  # the first step's demand (1.7 steps per adaptation on a Qwen3-shaped trace)
        w, out, size = ps.w[t, layer * e:(layer + 1) * e], credits[layer * e - lo:], sizes[layer * e - lo:]
        for i in range(e):
            out[i] = w[i] * d
            demand += size[i] if out[i] > lam else 0
    for iteration in range(ps.par[MAX_ITERS]):
        if iteration:
            demand = 0
            for i in range(hi - lo):
                demand += sizes[i] if credits[i] > lam else 0
        lam = max(0.0, lam + ps.fp[ETA] * (demand - capacity) / capacity)
        ps.lam[t, part] = lam
        if demand <= capacity:
            break


def observe(ps, cs, step, layer, objs):
    new_token = layer <= ps.par[CURRENT]
    lapsed = ps.par[STEP]
    if ps.par[CURRENT] >= 0:  # its lightest were found without its pinned objects, pinned no more
        forget(ps, 0, ps.par[CURRENT])
        forget(ps, 1, ps.par[CURRENT])
    ps.par[CURRENT] = layer
    ps.par[STEP] = step
    for hinted in range(ps.hint_step.shape[0]):
        if ps.hint_step[hinted] == lapsed and hinted != layer:  # their fused weights lapse now (this layer's are
            reweigh(ps, hinted)  # weighed again below, after its EWMA: the prefetchers hint the next layer)
    for obj in objs:
        ps.mark[obj] = step
    e = ps.par[EXPERTS]
    alpha = ps.fp[ALPHA]
    p, mark = ps.p[layer * e:(layer + 1) * e], ps.mark[layer * e:(layer + 1) * e]
    for i in range(e):
        p[i] = (1.0 - alpha) * p[i] + (alpha if mark[i] == step else 0.0)
    reweigh(ps, layer)  # no hint is fused yet: they come after the accesses
    if ps.par[GLOBAL]:  # every discount moved: `light_credit` of each layer over contiguous discounts, branch-free
        layers = ps.par[LAYERS]
        disc = ps.disc[layers - layer:2 * layers - layer]
        for t in range(2):
            light, lw, lc = ps.light[t], ps.lw[t], ps.lc[t]
            for other in range(layers):
                lc[other] = lw[other] * disc[other] if light[other] >= 0 else NONE
    if new_token or step == 0:
        for t in range(tiers(cs)):
            for part in range(ps.lam.shape[1]):
                fast_adapt(ps, cs, t, part)


def hint(ps, cs, step, layer, objs):
    e = ps.par[EXPERTS]
    for obj in objs:
        ps.hinted[obj] = step
        ps.hint_step[obj // e] = step
        for t in range(2):
            ps.w[t, obj] = fused(ps, obj) * ps.dens[t, obj]
            if ps.key[t, obj] == NONE:
                continue
            ps.key[t, obj] = ps.w[t, obj]
            if ps.light[t, obj // e] == obj:
                forget(ps, t, obj // e)
            else:
                offer(ps, cs, t, obj)


def enter(ps, cs, t, obj, tick):
    if ps.key[t, obj] != NONE:
        return
    ps.key[t, obj] = ps.w[t, obj]
    offer(ps, cs, t, obj)


def leave(ps, cs, t, obj):
    ps.key[t, obj] = NONE
    if ps.light[t, obj // ps.par[EXPERTS]] == obj:
        forget(ps, t, obj // ps.par[EXPERTS])


def above_watermark(ps, cs, t, obj):
    return fast_credit(ps, t, obj) > ps.lam[t, partition(cs, obj)]


@njit(cache=True, _nrt=False, inline="always")
def found_again(ps, cs, t, layer):
    """Find the layer's lightest candidate in tier t again, and its credit under the current layer."""
    ps.light[t, layer], ps.lw[t, layer] = scan(ps, cs, t, layer)
    ps.lc[t, layer] = light_credit(ps, t, layer)
    if layer == ps.par[CURRENT]:
        ps.seen[t] = cs.scal[STAMP]


@njit(cache=True, _nrt=False, inline="always")
def least_credit(light, lc, below):
    """The lightest candidate of least credit (the lowest layer on ties) if under `below`, else -1: the minimum
    comes from an integer pass over the credits' bits, as in `scan`, its first holder from a walk that stops
    there (a second pass over all L, as `scan` has, compiled to compare-and-branch code here: 0.2 s of 1.9)."""
    bits = lc.view(np.int64)
    least = NONE_BITS
    for i in range(bits.shape[0]):
        least = min(least, bits[i])
    if least == NONE_BITS:
        return -1
    found = 0
    while bits[found] != least:
        found += 1
    return light[found] if lc[found] < below else -1


def lowest_credit(ps, cs, t, incoming):
    """Each layer's lightest candidate (cached; the current layer's only while the pins stay), then the one of
    least credit, the lowest layer (so the lowest id) on ties."""
    current, stamp = ps.par[CURRENT], cs.scal[STAMP]
    if not ps.par[GLOBAL]:
        layer = incoming // ps.par[EXPERTS]
        if ps.light[t, layer] == STALE or (layer == current and ps.seen[t] != stamp):
            found_again(ps, cs, t, layer)
        return ps.light[t, layer] if light_credit(ps, t, layer) < fast_credit(ps, t, incoming) else -1
    for k in range(ps.ntodo[t]):
        found_again(ps, cs, t, ps.todo[t, k])
    ps.ntodo[t] = 0
    if ps.seen[t] != stamp:
        found_again(ps, cs, t, current)
    return least_credit(ps.light[t], ps.lc[t], fast_credit(ps, t, incoming))


register(WatermarkState, Rules(on_step=observe, on_hint=hint, on_insert=enter, on_remove=leave,
                               admit=above_watermark, victim=lowest_credit, inline=True))
