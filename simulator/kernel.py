"""The two-tier cache model of `simulator.cache` in numba: the fast path, event for event the same.

This file holds the mechanics only (lookup, admission, eviction until it fits, inclusion or
exclusion, pins, cpu-compute, prefetch, memory-aware routing) and no policy: the hooks below are
resolved, when numba compiles the kernel, from the type of the policy state it is given
(`simulator.policies.fast`), so numba builds and caches one kernel per policy with the policy's
fast rules compiled in. Helpers run without numba's reference counting (`_nrt=False`): the state
arrays outlive every call, and counting them on each call cost most of the time. They are also
inlined into `_run_step` by numba (`inline="always"`): a call passes every array of both states
field by field, about a hundred arguments, which cost half the time of a two-tier replay. Demand
accesses and prefetches share one inlined copy of the admission path (`_touch`): with a copy each,
LRU's kernel was 30% larger (9,138 machine instructions against 7,052) and replayed 1.4x slower with
the lookahead prefetcher. A policy's hooks are inlined too where its rules ask for it
(`Rules.inline`): the queue policies and LFU's bucket lists, whose hooks are many small calls,
replay 1.2x (ARC, LFU) to 2.2x (S3-FIFO) faster so, watermark, whose state has 16 arrays
(pushing them and the core's for each hook call took 17% of a per-layer replay), and affinity, whose
ordered list is walked at every use (1.6x: kernel alone, two tiers per layer 1.35 -> 0.82 s, lookahead
2.16 -> 1.31 s); for the others it gains nothing measurable (LRU, FIFO) or
multiplies the compile time, paid on a policy's first run on a machine (Belady's heaps: about 100 s
instead of 20).

Legend: n objects (L*E), P partitions, ps the policy's fast state, cs the `CoreState`, t a tier
(0 VRAM, 1 RAM).
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload

from simulator import events as ev
from simulator.jit import njit
from simulator.policies.fast import (CAP, CPU_COMPUTE, EXPERTS, HAS_FUTURE, HAS_RAM, INCLUSIVE, MARK, N_EV, NEXT, PIN,
                                     RES_RAM, RES_VRAM, ROUTING, RULES, SEQUENTIAL, SIZE, STAMP, TICK, USED,
                                     partition)
from simulator.routing import reroute_into

HOOK_OPTIONS = {"_nrt": False}


def _rule(ps, hook: str):
    """The policy's implementation of `hook`, chosen by the type of its state."""
    rule = getattr(RULES[ps.instance_class], hook)
    return getattr(rule, "py_func", rule)


def on_step(ps, cs, step, layer, objs):
    """Policy hooks, compiled from the policy's rules (see `_rule`); never called from Python."""
    raise NotImplementedError


def on_hint(ps, cs, step, layer, objs):
    raise NotImplementedError


def on_hit(ps, cs, t, obj, tick):
    raise NotImplementedError


def on_insert(ps, cs, t, obj, tick):
    raise NotImplementedError


def on_remove(ps, cs, t, obj):
    raise NotImplementedError


def admit(ps, cs, t, obj):
    raise NotImplementedError


def victim(ps, cs, t, incoming):
    raise NotImplementedError


def _inline(expr, caller_info, callee_info) -> bool:
    """numba's choice, per call of a hook, whether to inline it: the policy's rules say."""
    return RULES[caller_info.typemap[expr.args[0].name].instance_class].inline


for _stub in (on_step, on_hint, on_hit, on_insert, on_remove, admit, victim):
    overload(_stub, jit_options=HOOK_OPTIONS, strict=False, inline=_inline)(
        lambda ps, *args, _name=_stub.__name__: _rule(ps, _name))


@njit(cache=True, _nrt=False, inline="always")
def _emit(cs, step, kind, obj):
    i = cs.scal[N_EV]
    cs.ev_step[i] = step
    cs.ev_kind[i] = kind
    cs.ev_obj[i] = obj
    cs.scal[N_EV] = i + 1


@njit(cache=True, _nrt=False, inline="always")
def _tick(cs):
    cs.scal[TICK] += 1
    return cs.scal[TICK]


@njit(cache=True, _nrt=False, inline="always")
def _ram_remove(ps, cs, obj):
    cs.obj[RES_RAM, obj] = 0
    cs.part[USED + 1, partition(cs, obj)] -= cs.obj[SIZE, obj]
    on_remove(ps, cs, 1, obj)


@njit(cache=True, _nrt=False, inline="always")
def _ram_admit(ps, cs, step, obj):
    if not admit(ps, cs, 1, obj):
        return False
    part, size = partition(cs, obj), cs.obj[SIZE, obj]
    while cs.part[USED + 1, part] + size > cs.part[CAP + 1, part]:
        out = victim(ps, cs, 1, obj)
        if out < 0:
            return False
        _ram_remove(ps, cs, out)
        _emit(cs, step, ev.EVICT_RAM, out)
    cs.obj[RES_RAM, obj] = 1
    cs.part[USED + 1, part] += size
    on_insert(ps, cs, 1, obj, _tick(cs))
    return True


@njit(cache=True, _nrt=False, inline="always")
def _evict_vram(ps, cs, step, obj):
    cs.obj[RES_VRAM, obj] = 0
    cs.part[USED, partition(cs, obj)] -= cs.obj[SIZE, obj]
    on_remove(ps, cs, 0, obj)
    _emit(cs, step, ev.EVICT_VRAM, obj)
    if not cs.cfg[HAS_RAM]:
        return
    if cs.cfg[INCLUSIVE]:
        if cs.obj[RES_RAM, obj]:
            on_insert(ps, cs, 1, obj, _tick(cs))  # evictable from RAM again
    elif _ram_admit(ps, cs, step, obj):
        _emit(cs, step, ev.DEMOTE, obj)


@njit(cache=True, _nrt=False, inline="always")
def _vram_admit(ps, cs, step, obj):
    if not admit(ps, cs, 0, obj):
        return False
    part, size = partition(cs, obj), cs.obj[SIZE, obj]
    while cs.part[USED, part] + size > cs.part[CAP, part]:
        out = victim(ps, cs, 0, obj)
        if out < 0:
            return False
        _evict_vram(ps, cs, step, out)
    cs.obj[RES_VRAM, obj] = 1
    cs.part[USED, part] += size
    on_insert(ps, cs, 0, obj, _tick(cs))
    return True


@njit(cache=True, _nrt=False, inline="always")
def _load(ps, cs, step, obj):
    """Bring `obj` into VRAM (see `ReferenceCache._load`); False if it is not admitted."""
    has_ram = cs.cfg[HAS_RAM]
    inclusive = cs.cfg[INCLUSIVE] and has_ram
    moving_up = has_ram and not inclusive and cs.obj[RES_RAM, obj]
    if moving_up:
        _ram_remove(ps, cs, obj)
    if not _vram_admit(ps, cs, step, obj):
        if moving_up or (inclusive and not cs.obj[RES_RAM, obj]):
            _ram_admit(ps, cs, step, obj)
        return False
    if inclusive and (cs.obj[RES_RAM, obj] or _ram_admit(ps, cs, step, obj)):
        on_remove(ps, cs, 1, obj)  # not evictable from RAM while in VRAM
    return True


@njit(cache=True, _nrt=False, inline="always")
def _touch(ps, cs, step, obj, demand):
    """A demand access of `obj` (`demand`), or a prefetch: both go through this one inlined copy of `_load`."""
    if cs.obj[RES_VRAM, obj]:
        if demand:
            on_hit(ps, cs, 0, obj, _tick(cs))
            _emit(cs, step, ev.HIT, obj)
        return
    has_ram = cs.cfg[HAS_RAM]
    from_ram = has_ram and cs.obj[RES_RAM, obj] != 0
    cpu = demand and cs.cfg[CPU_COMPUTE]
    if demand and from_ram:
        on_hit(ps, cs, 1, obj, _tick(cs))
    if cpu:
        if not from_ram and has_ram:
            _ram_admit(ps, cs, step, obj)
        _emit(cs, step, ev.CPU_RAM if from_ram else ev.CPU_NVME, obj)
    loaded = _load(ps, cs, step, obj)
    if not demand:
        if loaded:
            _emit(cs, step, ev.PREFETCH_RAM if from_ram else ev.PREFETCH_NVME, obj)
        elif not from_ram and has_ram and cs.obj[RES_RAM, obj]:
            _emit(cs, step, ev.READAHEAD, obj)
    elif cpu:
        if loaded:
            _emit(cs, step, ev.FILL, obj)
    elif loaded:
        _emit(cs, step, ev.LOAD_RAM if from_ram else ev.LOAD_NVME, obj)
    else:
        _emit(cs, step, ev.STAGE_RAM if from_ram else ev.STAGE_NVME, obj)


@njit(cache=True, _nrt=False)
def _route(cs, s, step, layer, row_ptr, row_experts, row_logits, recorded, chosen, kept, routed):
    """Re-route the rows of step s (global `step`); the step's objects go to `routed` (E,) int32; returns
    their count. row_logits (N, E) are float16 bits; chosen (K,) int16 and kept (K,) float64 are scratch."""
    e = cs.cfg[EXPERTS]
    base = layer * e
    resident = cs.obj[RES_VRAM, base:base + e]
    count = 0
    marker = -(step + 1)  # a fresh stamp for set comparisons
    for r in range(row_ptr[s], row_ptr[s + 1]):
        lost = reroute_into(row_logits[r], row_experts[r], resident, cs.fl[0], chosen, kept)
        cs.fl[2] += 1
        cs.fl[3] += lost
        for x in chosen:
            obj = base + x
            if cs.obj[MARK, obj] != marker:
                cs.obj[MARK, obj] = marker
                routed[count] = obj
                count += 1
    changed = count != recorded.shape[0]
    for obj in recorded:
        if cs.obj[MARK, obj] != marker:
            changed = True
    if changed:
        cs.fl[1] += 1
    return count


@njit(cache=True, _nrt=False, nogil=True)
def _run_step(ps, cs, step, layer, objs, acc_next, acc0, hints):
    """One step: its accesses, pinned together or one by one, then the prefetcher's hints, in one loop so that
    `_touch` is inlined once."""
    sequential = cs.cfg[SEQUENTIAL]
    on_step(ps, cs, step, layer, objs)
    cs.scal[STAMP] += 2
    if not sequential:
        for obj in objs:
            cs.obj[PIN, obj] = cs.scal[STAMP]
    m = objs.shape[0]
    for i in range(m + hints.shape[0]):
        demand = i < m
        if demand:
            obj = objs[i]
            if cs.cfg[HAS_FUTURE]:
                cs.obj[NEXT, obj] = acc_next[acc0 + i]
            if sequential:
                cs.scal[STAMP] += 2
                cs.obj[PIN, obj] = cs.scal[STAMP]
        else:
            if i == m:
                if sequential:
                    cs.scal[STAMP] += 2
                on_hint(ps, cs, step, layer, hints)
            obj = hints[i - m]
        _touch(ps, cs, step, obj, demand)
    if sequential and not hints.shape[0]:
        cs.scal[STAMP] += 2


@njit(cache=True, nogil=True)
def replay(ps, cs, step0, start, layer, ptr, objects, row_ptr, row_experts, row_logits, acc_next, plan_ptr,
           plan_objects):
    """Replay steps from `start` until done or the event buffer runs short; returns the next step."""
    steps = layer.shape[0]
    room = cs.ev_step.shape[0]
    n = cs.obj.shape[1]
    chosen = np.empty(row_experts.shape[1], np.int16)
    kept = np.empty(row_experts.shape[1], np.float64)
    routed = np.empty(cs.cfg[EXPERTS], np.int32)  # a step's objects are distinct and of one layer
    for s in range(start, steps):
        need = 4 * (ptr[s + 1] - ptr[s] + plan_ptr[s + 1] - plan_ptr[s]) + 2 * n + 16
        if cs.scal[N_EV] + need > room:
            return s
        step = step0 + s
        recorded = objects[ptr[s]:ptr[s + 1]]
        if cs.cfg[ROUTING]:
            count = _route(cs, s, step, layer[s], row_ptr, row_experts, row_logits, recorded, chosen, kept, routed)
            objs = routed[:count]
        else:
            objs = recorded
        _run_step(ps, cs, step, layer[s], objs, acc_next, ptr[s], plan_objects[plan_ptr[s]:plan_ptr[s + 1]])
    return steps
