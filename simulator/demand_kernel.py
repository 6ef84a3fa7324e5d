"""The plain demand-caching fast path: one tier, one global cache, one request per expert, nothing
prefetched or re-routed (libCacheSim's setting), for LRU, FIFO, LFU and Belady.

The same decisions and events as `simulator.kernel` (and so as the reference core), in one loop
over flat arrays with no calls that carry the general kernel's state: this is the configuration
that is compared with libCacheSim and swept for miss-ratio curves, so it gets its own tight loop.
LRU and FIFO keep residents in a circular doubly linked list (most recent after the sentinel, whose
index is n), where their integer keys would order them the same; LFU and Belady use the lazy heap.
"""

from __future__ import annotations

import numpy as np

from simulator import events as ev
from simulator.dlist import push_front, unlink
from simulator.heap import sift_down, sift_up
from simulator.jit import njit

LRU, FIFO, LFU, BELADY = range(4)
DEMAND_POLICIES = {"lru": LRU, "fifo": FIFO, "lfu": LFU, "belady": BELADY}  # the policies this loop knows
# scalar state
TICK, USED, HEAP_SIZE, N_EV = range(4)
COUNT_SHIFT = 40  # LFU's heap key: count << 40 | tick, the order of (count, tick)


@njit(cache=True)
def _rebuild(resident, key, hk, ho):
    n = 0
    for obj in range(resident.shape[0]):
        if resident[obj]:
            hk[n] = key[obj]
            ho[n] = obj
            n += 1
    for i in range(n // 2 - 1, -1, -1):
        sift_down(hk, ho, n, i)
    return n


@njit(cache=True, nogil=True)
def demand_replay(policy, bypass, capacity, sizes, resident, key, count, future, hk, ho, prev, nxt, scal, step0,
                  start, ptr, objects, acc_next, ev_step, ev_kind, ev_obj):
    """Replay steps from `start` until done or the event buffer runs short; returns the next step."""
    steps = ptr.shape[0] - 1
    room = ev_step.shape[0]
    heap_cap = hk.shape[0]
    tick, used, hn, n_ev = scal[TICK], scal[USED], scal[HEAP_SIZE], scal[N_EV]
    sentinel = prev.shape[0] - 1
    s = start
    while s < steps:
        if n_ev + 4 * (ptr[s + 1] - ptr[s]) + resident.shape[0] + 16 > room:
            break
        step = step0 + s
        for a in range(ptr[s], ptr[s + 1]):
            obj = objects[a]
            if policy == BELADY:
                future[obj] = acc_next[a]
            if resident[obj]:
                tick += 1
                if policy == LRU:
                    key[obj] = tick
                    unlink(prev, nxt, obj)
                    push_front(prev, nxt, sentinel, obj)
                elif policy != FIFO:
                    if policy == LFU:
                        count[obj] += 1
                        key[obj] = (count[obj] << COUNT_SHIFT) | tick
                    else:
                        key[obj] = -future[obj]
                    if hn == heap_cap:
                        hn = _rebuild(resident, key, hk, ho)
                    hk[hn], ho[hn] = key[obj], obj
                    sift_up(hk, ho, hn)
                    hn += 1
                ev_step[n_ev], ev_kind[n_ev], ev_obj[n_ev] = step, ev.HIT, obj
                n_ev += 1
                continue
            admitted = True
            while used + sizes[obj] > capacity:
                victim = -1
                if policy == LRU or policy == FIFO:
                    victim = prev[sentinel] if prev[sentinel] != sentinel else -1
                while victim < 0 and hn > 0:  # smallest live entry (objects are never pinned here: one request at a time)
                    k, cand = hk[0], ho[0]
                    if resident[cand] and key[cand] == k:
                        victim = cand
                        break
                    hn -= 1
                    hk[0], ho[0] = hk[hn], ho[hn]
                    sift_down(hk, ho, hn, 0)
                if victim < 0 or (bypass and future[obj] > future[victim]):
                    admitted = False
                    break
                resident[victim] = False
                used -= sizes[victim]
                if policy == LRU or policy == FIFO:
                    unlink(prev, nxt, victim)
                ev_step[n_ev], ev_kind[n_ev], ev_obj[n_ev] = step, ev.EVICT_VRAM, victim
                n_ev += 1
            if admitted:
                resident[obj] = True
                used += sizes[obj]
                tick += 1
                if policy == LFU:
                    count[obj] = 1
                    key[obj] = (np.int64(1) << COUNT_SHIFT) | tick
                elif policy == BELADY:
                    key[obj] = -future[obj]
                else:
                    key[obj] = tick
                if policy == LRU or policy == FIFO:
                    push_front(prev, nxt, sentinel, obj)
                else:
                    if hn == heap_cap:
                        hn = _rebuild(resident, key, hk, ho)
                    hk[hn], ho[hn] = key[obj], obj
                    sift_up(hk, ho, hn)
                    hn += 1
            ev_step[n_ev], ev_kind[n_ev], ev_obj[n_ev] = step, ev.LOAD_NVME if admitted else ev.STAGE_NVME, obj
            n_ev += 1
        s += 1
    scal[TICK], scal[USED], scal[HEAP_SIZE], scal[N_EV] = tick, used, hn, n_ev
    return s
