"""The two-tier cache model of `simulator.cache` in numba: the fast path, event for event the same.

Every policy of the registry is a branch on its code. Key-ranked policies keep a lazy min-heap of
(key, object) per tier (one per layer with per-layer partitions or layer-aware LRU): an entry is
live while the object is a candidate and its key unchanged, stale entries are skipped when popped,
and a full heap is rebuilt from the live keys. Watermark-credit scans its partition, as its credits
all move every step. Integer keys and one shared table of discounts make both implementations
compute the same ranks, so the tests can demand identical events.

Legend: n objects (L*E), P partitions, H heaps per tier, C entries per heap, tier 0 VRAM, 1 RAM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from simulator import events as ev
from simulator.heap import sift_down, sift_up
from simulator.routing import reroute

LRU, FIFO, LFU, BELADY, AFFINITY, LAYER_LRU, WATERMARK = range(7)
# cfg fields
POLICY, PER_LAYER, INCLUSIVE, SEQUENTIAL, CPU_COMPUTE, HAS_RAM, LAYERS, EXPERTS, HEAPS, DECAY_EVERY, MAX_ITERS, \
    HAS_FUTURE, ROUTING, BYPASS = range(14)
# scalar state fields
TICK, STAMP, N_EV, CURRENT, STEPS_SEEN, STEP = range(6)
COUNT_SHIFT = 40  # LFU key: count << 40 | tick


class KernelState(NamedTuple):
    cfg: np.ndarray  # int64 fields above
    fp: np.ndarray  # float64 [alpha, eta, routing bonus, lookahead weight]
    sizes: np.ndarray  # (n,) int64
    cap: np.ndarray  # (2, P) int64
    used: np.ndarray  # (2, P) int64
    res: np.ndarray  # (2, n) bool: resident
    cand: np.ndarray  # (2, n) bool: in the policy's structure (evictable candidate)
    key: np.ndarray  # (2, n) int64
    count: np.ndarray  # (2, n) int64: LFU counts
    hk: np.ndarray  # (2, H, C) int64 heap keys
    ho: np.ndarray  # (2, H, C) int32 heap objects
    hn: np.ndarray  # (2, H) int64 heap sizes
    stash_k: np.ndarray  # (n,) int64: pinned entries set aside while popping
    stash_o: np.ndarray  # (n,) int32
    p: np.ndarray  # (n,) float64: watermark EWMA
    dens: np.ndarray  # (2, n) float64: watermark C/S over its mean, per tier
    disc: np.ndarray  # (L,) float64: exp(-gamma * D)
    lam: np.ndarray  # (2, P) float64: watermarks
    last_chosen: np.ndarray  # (n,) int64
    hinted: np.ndarray  # (n,) int64: step at which the prefetcher last predicted the object
    future: np.ndarray  # (n,) int64: next access index (Belady)
    pin: np.ndarray  # (n,) int64: pin stamp
    scal: np.ndarray  # int64 fields above
    ev_step: np.ndarray  # (cap,) int64
    ev_kind: np.ndarray  # (cap,) int8
    ev_obj: np.ndarray  # (cap,) int32
    routing: np.ndarray  # float64 [changed steps, tokens, weight lost]
    step_objs: np.ndarray  # (n,) int32 scratch: the current step's objects after re-routing
    mark: np.ndarray  # (n,) int64 scratch stamps for set comparisons


@njit(cache=True)
def _emit(st, step, kind, obj):
    i = st.scal[N_EV]
    st.ev_step[i] = step
    st.ev_kind[i] = kind
    st.ev_obj[i] = obj
    st.scal[N_EV] = i + 1


@njit(cache=True)
def _tick(st):
    st.scal[TICK] += 1
    return st.scal[TICK]


@njit(cache=True)
def _heap_of(st, obj):
    return obj // st.cfg[EXPERTS] if st.cfg[HEAPS] > 1 else 0


@njit(cache=True)
def _rebuild(st, t, h):
    """Drop stale entries of heap (t, h): one live entry per candidate, then heapify."""
    hk, ho = st.hk[t, h], st.ho[t, h]
    n = 0
    for obj in range(st.sizes.shape[0]):
        if st.cand[t, obj] and _heap_of(st, obj) == h:
            hk[n] = st.key[t, obj]
            ho[n] = obj
            n += 1
    for i in range(n // 2 - 1, -1, -1):
        sift_down(hk, ho, n, i)
    st.hn[t, h] = n


@njit(cache=True)
def _push(st, t, obj):
    h = _heap_of(st, obj)
    if st.hn[t, h] == st.hk.shape[2]:
        _rebuild(st, t, h)
    n = st.hn[t, h]
    st.hk[t, h, n] = st.key[t, obj]
    st.ho[t, h, n] = obj
    st.hn[t, h] = n + 1
    sift_up(st.hk[t, h], st.ho[t, h], n)


@njit(cache=True)
def _pin_stamp(st, t):
    """The stamp that marks pinned objects for tier t; RAM residents are pinned only in cpu-compute mode."""
    return st.scal[STAMP] if t == 0 or st.cfg[CPU_COMPUTE] else -3


@njit(cache=True)
def _pop_victim(st, t, h):
    """The smallest live, unpinned entry of heap (t, h), left in place; -1 if none."""
    hk, ho = st.hk[t, h], st.ho[t, h]
    stamp = _pin_stamp(st, t)
    stashed = 0
    victim = -1
    while st.hn[t, h] > 0:
        k, obj = hk[0], ho[0]
        live = st.cand[t, obj] and st.key[t, obj] == k
        if live and st.pin[obj] != stamp:
            victim = obj
            break
        if live:
            st.stash_k[stashed] = k
            st.stash_o[stashed] = obj
            stashed += 1
        n = st.hn[t, h] - 1
        hk[0], ho[0] = hk[n], ho[n]
        st.hn[t, h] = n
        sift_down(hk, ho, n, 0)
    for i in range(stashed):
        n = st.hn[t, h]
        hk[n], ho[n] = st.stash_k[i], st.stash_o[i]
        st.hn[t, h] = n + 1
        sift_up(hk, ho, n)
    return victim


@njit(cache=True)
def _credit(st, t, obj):
    layers = st.cfg[LAYERS]
    distance = (obj // st.cfg[EXPERTS] - st.scal[CURRENT]) % layers
    p = st.p[obj]
    if st.hinted[obj] == st.scal[STEP]:
        p = 1.0 - (1.0 - p) * (1.0 - st.fp[3])
    return p * st.disc[distance] * st.dens[t, obj]


@njit(cache=True)
def _partition_range(st, obj):
    e = st.cfg[EXPERTS]
    if st.cfg[PER_LAYER]:
        layer = obj // e
        return layer * e, (layer + 1) * e
    return 0, st.sizes.shape[0]


@njit(cache=True)
def _part(st, obj):
    return obj // st.cfg[EXPERTS] if st.cfg[PER_LAYER] else 0


@njit(cache=True)
def _victim(st, t, incoming):
    policy = st.cfg[POLICY]
    if policy == WATERMARK:
        lo, hi = _partition_range(st, incoming)
        best, best_credit = -1, 0.0
        stamp = _pin_stamp(st, t)
        for obj in range(lo, hi):
            if st.cand[t, obj] and st.pin[obj] != stamp:
                c = _credit(st, t, obj)
                if best < 0 or c < best_credit:
                    best, best_credit = obj, c
        if best < 0 or best_credit >= _credit(st, t, incoming):
            return -1
        return best
    if st.cfg[PER_LAYER] or st.cfg[HEAPS] == 1:
        victim = _pop_victim(st, t, _heap_of(st, incoming))
        if victim >= 0 and st.cfg[BYPASS] and st.future[incoming] > st.future[victim]:
            return -1
        return victim
    layers = st.cfg[LAYERS]
    for d in range(layers - 1, -1, -1):  # layer-aware LRU: furthest layer first
        victim = _pop_victim(st, t, (st.scal[CURRENT] + d) % layers)
        if victim >= 0:
            return victim
    return -1


@njit(cache=True)
def _on_hit(st, t, obj):
    policy = st.cfg[POLICY]
    tick = _tick(st)
    if policy == LRU or policy == LAYER_LRU:
        st.key[t, obj] = tick
    elif policy == LFU:
        st.count[t, obj] += 1
        st.key[t, obj] = (st.count[t, obj] << COUNT_SHIFT) | tick
    elif policy == BELADY:
        st.key[t, obj] = -st.future[obj]
    elif policy == AFFINITY:
        st.key[t, obj] = st.last_chosen[obj]
    else:
        return
    _push(st, t, obj)


@njit(cache=True)
def _on_insert(st, t, obj):
    policy = st.cfg[POLICY]
    tick = _tick(st)
    st.cand[t, obj] = True
    if policy == WATERMARK:
        return
    if policy == LFU:
        st.count[t, obj] = 1
        st.key[t, obj] = (np.int64(1) << COUNT_SHIFT) | tick
    elif policy == BELADY:
        st.key[t, obj] = -st.future[obj]
    elif policy == AFFINITY:
        st.key[t, obj] = st.last_chosen[obj]
    else:
        st.key[t, obj] = tick
    _push(st, t, obj)


@njit(cache=True)
def _adapt(st, t, part):
    e = st.cfg[EXPERTS]
    lo, hi = (part * e, (part + 1) * e) if st.cfg[PER_LAYER] else (0, st.sizes.shape[0])
    capacity = float(st.cap[t, part])
    eta = st.fp[1]
    for _ in range(st.cfg[MAX_ITERS]):
        demand = 0
        for obj in range(lo, hi):
            if _credit(st, t, obj) > st.lam[t, part]:
                demand += st.sizes[obj]
        step = eta * (demand - capacity) / capacity
        st.lam[t, part] = max(0.0, st.lam[t, part] + step)
        if demand <= capacity:
            break


@njit(cache=True)
def _on_step(st, step, layer, objs, count):
    policy = st.cfg[POLICY]
    tiers = 2 if st.cfg[HAS_RAM] else 1
    previous = st.scal[CURRENT]
    st.scal[CURRENT] = layer
    st.scal[STEP] = step
    if policy == AFFINITY:
        for i in range(count):
            st.last_chosen[objs[i]] = step
    elif policy == LFU:
        st.scal[STEPS_SEEN] += 1
        every = st.cfg[DECAY_EVERY]
        if every > 0 and st.scal[STEPS_SEEN] % every == 0:
            for t in range(tiers):
                for obj in range(st.sizes.shape[0]):
                    if st.cand[t, obj]:
                        st.count[t, obj] = max(1, st.count[t, obj] // 2)
                        tick = st.key[t, obj] & ((np.int64(1) << COUNT_SHIFT) - 1)
                        st.key[t, obj] = (st.count[t, obj] << COUNT_SHIFT) | tick
                for h in range(st.cfg[HEAPS]):
                    _rebuild(st, t, h)
    elif policy == WATERMARK:
        e = st.cfg[EXPERTS]
        alpha = st.fp[0]
        for i in range(count):
            st.mark[objs[i]] = step
        for obj in range(layer * e, (layer + 1) * e):
            st.p[obj] = (1.0 - alpha) * st.p[obj] + (alpha if st.mark[obj] == step else 0.0)
        if layer <= previous or step == 0:
            for t in range(tiers):
                for part in range(st.cap.shape[1]):
                    _adapt(st, t, part)


@njit(cache=True)
def _admit(st, t, obj):
    if st.cfg[POLICY] == WATERMARK:
        return _credit(st, t, obj) > st.lam[t, _part(st, obj)]
    return True


@njit(cache=True)
def _ram_admit(st, step, obj):
    if not _admit(st, 1, obj):
        return False
    part, size = _part(st, obj), st.sizes[obj]
    while st.used[1, part] + size > st.cap[1, part]:
        victim = _victim(st, 1, obj)
        if victim < 0:
            return False
        _ram_remove(st, victim)
        _emit(st, step, ev.EVICT_RAM, victim)
    st.res[1, obj] = True
    st.used[1, part] += size
    _on_insert(st, 1, obj)
    return True


@njit(cache=True)
def _evict_vram(st, step, obj):
    st.res[0, obj] = False
    st.used[0, _part(st, obj)] -= st.sizes[obj]
    st.cand[0, obj] = False
    _emit(st, step, ev.EVICT_VRAM, obj)
    if not st.cfg[HAS_RAM]:
        return
    if st.cfg[INCLUSIVE]:
        if st.res[1, obj]:
            _on_insert(st, 1, obj)
    elif _ram_admit(st, step, obj):
        _emit(st, step, ev.DEMOTE, obj)


@njit(cache=True)
def _vram_admit(st, step, obj):
    if not _admit(st, 0, obj):
        return False
    part, size = _part(st, obj), st.sizes[obj]
    while st.used[0, part] + size > st.cap[0, part]:
        victim = _victim(st, 0, obj)
        if victim < 0:
            return False
        _evict_vram(st, step, victim)
    st.res[0, obj] = True
    st.used[0, part] += size
    _on_insert(st, 0, obj)
    return True


@njit(cache=True)
def _ram_remove(st, obj):
    st.res[1, obj] = False
    st.used[1, _part(st, obj)] -= st.sizes[obj]
    st.cand[1, obj] = False


@njit(cache=True)
def _load(st, step, obj):
    has_ram = st.cfg[HAS_RAM]
    inclusive = st.cfg[INCLUSIVE] and has_ram
    moving_up = has_ram and not inclusive and st.res[1, obj]
    if moving_up:
        _ram_remove(st, obj)
    if not _vram_admit(st, step, obj):
        if moving_up or (inclusive and not st.res[1, obj]):
            _ram_admit(st, step, obj)
        return False
    if inclusive and (st.res[1, obj] or _ram_admit(st, step, obj)):
        st.cand[1, obj] = False
    return True


@njit(cache=True)
def _access(st, step, obj):
    if st.res[0, obj]:
        _on_hit(st, 0, obj)
        _emit(st, step, ev.HIT, obj)
        return
    has_ram = st.cfg[HAS_RAM]
    from_ram = has_ram and st.res[1, obj]
    if from_ram:
        _on_hit(st, 1, obj)
    if st.cfg[CPU_COMPUTE]:
        if not from_ram and has_ram:
            _ram_admit(st, step, obj)
        _emit(st, step, ev.CPU_RAM if from_ram else ev.CPU_NVME, obj)
        if _load(st, step, obj):
            _emit(st, step, ev.FILL, obj)
        return
    if _load(st, step, obj):
        _emit(st, step, ev.LOAD_RAM if from_ram else ev.LOAD_NVME, obj)
    else:
        _emit(st, step, ev.STAGE_RAM if from_ram else ev.STAGE_NVME, obj)


@njit(cache=True)
def _prefetch(st, step, obj):
    if st.res[0, obj]:
        return
    has_ram = st.cfg[HAS_RAM]
    from_ram = has_ram and st.res[1, obj]
    if _load(st, step, obj):
        _emit(st, step, ev.PREFETCH_RAM if from_ram else ev.PREFETCH_NVME, obj)
    elif not from_ram and has_ram and st.res[1, obj]:
        _emit(st, step, ev.READAHEAD, obj)


@njit(cache=True)
def _route(st, s, layer, row_ptr, row_experts, row_logits, recorded):
    """Re-route the rows of step s; the step's objects go to st.step_objs; returns their count."""
    e = st.cfg[EXPERTS]
    base = layer * e
    resident = st.res[0, base:base + e].copy()
    count = 0
    marker = st.scal[STAMP] + 1  # a fresh stamp for set comparisons (pins use their own)
    for r in range(row_ptr[s], row_ptr[s + 1]):
        chosen, lost = reroute(row_logits[r], row_experts[r], resident, st.fp[2])
        st.routing[1] += 1
        st.routing[2] += lost
        for x in chosen:
            obj = base + x
            if st.mark[obj] != -marker:
                st.mark[obj] = -marker
                st.step_objs[count] = obj
                count += 1
    changed = count != recorded.shape[0]
    for obj in recorded:
        if st.mark[obj] != -marker:
            changed = True
    if changed:
        st.routing[0] += 1
    return count


@njit(cache=True)
def replay(st, step0, start, layer, ptr, objects, row_ptr, row_experts, row_logits, acc_next, plan_ptr,
           plan_objects):
    """Replay steps from `start` until done or the event buffer runs short; returns the next step."""
    steps = layer.shape[0]
    room = st.ev_step.shape[0]
    n = st.sizes.shape[0]
    sequential = st.cfg[SEQUENTIAL]
    for s in range(start, steps):
        need = 4 * (ptr[s + 1] - ptr[s] + plan_ptr[s + 1] - plan_ptr[s]) + 2 * n + 16
        if st.scal[N_EV] + need > room:
            return s
        step = step0 + s
        recorded = objects[ptr[s]:ptr[s + 1]]
        if st.cfg[ROUTING]:
            count = _route(st, s, layer[s], row_ptr, row_experts, row_logits, recorded)
            objs = st.step_objs[:count].copy()
        else:
            objs = recorded
        _on_step(st, step, layer[s], objs, objs.shape[0])
        st.scal[STAMP] += 2
        if not sequential:
            for obj in objs:
                st.pin[obj] = st.scal[STAMP]
        for i in range(objs.shape[0]):
            obj = objs[i]
            if st.cfg[HAS_FUTURE]:
                st.future[obj] = acc_next[ptr[s] + i]
            if sequential:
                st.scal[STAMP] += 2
                st.pin[obj] = st.scal[STAMP]
            _access(st, step, obj)
        if sequential:
            st.scal[STAMP] += 2
        for j in range(plan_ptr[s], plan_ptr[s + 1]):
            st.hinted[plan_objects[j]] = step
        for j in range(plan_ptr[s], plan_ptr[s + 1]):
            _prefetch(st, step, plan_objects[j])
    return steps
