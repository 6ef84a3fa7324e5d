"""The prefetchers' plans in numba: a chunk of steps at a time, the same objects in the same order as
`simulator.prefetchers`' classes (the reference, which the engine also drives online step by step).

Each plan returns (ptr (S+1,), objects) like `simulator.prefetchers.plan` and carries its learning
across chunks in the arrays it is given. Legend: S steps, R rows, K lookahead width, L layers,
E experts per layer.
"""

from __future__ import annotations

import numpy as np

from simulator.jit import njit


BLOCK = 8  # _top's block width


@njit(cache=True, nogil=True, inline="always")
def _top(scores, layer, num_experts, limit, out, count, keys, best):
    """Append to `out` the `limit` experts of `layer` with the highest positive integer score, highest first
    (ties: lower id), as the reference's stable argsort does; returns the new count. `scores` holds all
    layers' scores or this layer's. Each expert gets a unique key, score * E + (E - 1 - e); blocks of
    BLOCK keys keep their maximum in `best`, and each pick takes the maximum of the block maxima and
    recomputes one block: about 4x faster than one pass with insertion, whose branches mispredict.
    keys (E,) and best (ceil(E / BLOCK),) int64 are scratch."""
    base = layer * num_experts if scores.shape[0] > num_experts else 0  # all layers' scores, or this layer's
    blocks = best.shape[0]
    for e in range(num_experts):
        keys[e] = np.int64(scores[base + e]) * num_experts + (num_experts - 1 - e)
    for b in range(blocks):
        best[b] = _block_max(keys, b, num_experts)
    n = 0
    while n < limit:
        top = best[0]
        for b in range(1, blocks):
            top = max(top, best[b])
        if top < num_experts:  # score 0 (or taken)
            break
        e = num_experts - 1 - top % num_experts
        out[count + n] = layer * num_experts + e
        n += 1
        keys[e] = -1
        best[e // BLOCK] = _block_max(keys, e // BLOCK, num_experts)
    return count + n


@njit(cache=True, nogil=True, inline="always")
def _block_max(keys, b, num_experts):
    top = np.int64(-1)
    for e in range(b * BLOCK, min(num_experts, (b + 1) * BLOCK)):
        top = max(top, keys[e])
    return top


@njit(cache=True, nogil=True, inline="always")
def _top_scratch(num_experts):
    """Scratch arrays for `_top`: keys (E,) and block maxima."""
    return np.empty(num_experts, np.int64), np.empty((num_experts + BLOCK - 1) // BLOCK, np.int64)


@njit(cache=True, nogil=True)
def lookahead_plan(layer, row_ptr, lookahead, num_layers, num_experts, limit):
    """Per step, the distinct experts of its rows' lookahead column (K per row, -1 none), in order."""
    steps = layer.shape[0]
    ptr = np.zeros(steps + 1, np.int64)
    out = np.empty(steps * limit, np.int32)
    count = 0
    for s in range(steps):
        if layer[s] + 1 < num_layers:
            base = (layer[s] + 1) * num_experts
            start = count
            for r in range(row_ptr[s], row_ptr[s + 1]):
                for e in lookahead[r]:
                    if e < 0 or count - start == limit:
                        continue
                    obj = base + e
                    seen = False
                    for i in range(start, count):
                        seen = seen or out[i] == obj
                    if not seen:
                        out[count] = obj
                        count += 1
        ptr[s + 1] = count
    return ptr, out[:count]


@njit(cache=True, nogil=True)
def affinity_plan(layer, ptr_objects, objects, recency, clock, num_layers, num_experts, limit):
    """Per step, the next layer's experts most recently chosen first; then this step's experts are
    stamped with the step clock (`clock[0]`, carried over chunks) in `recency` (1 + step, 0 never)."""
    steps = layer.shape[0]
    ptr = np.zeros(steps + 1, np.int64)
    out = np.empty(steps * limit, np.int32)
    keys, best = _top_scratch(num_experts)
    count = 0
    for s in range(steps):
        target = (layer[s] + 1) % num_layers
        count = _top(recency, target, num_experts, limit, out, count, keys, best)
        ptr[s + 1] = count
        clock[0] += 1
        for i in range(ptr_objects[s], ptr_objects[s + 1]):
            recency[objects[i]] = clock[0]
    return ptr, out[:count]


@njit(cache=True, nogil=True)
def transitions_plan(layer, request, ptr_objects, objects, counts, previous, previous_experts, num_layers,
                     num_experts, limit):
    """Per step, the next layer's experts with the highest summed transition counts from this step's
    experts; then the counts learn (previous step -> this one) within a token. `previous` holds the
    previous step's [request, layer, expert count] and `previous_experts` its experts, over chunks."""
    steps = layer.shape[0]
    ptr = np.zeros(steps + 1, np.int64)
    out = np.empty(steps * limit, np.int32)
    scores = np.zeros(num_experts, np.int64)
    keys, best = _top_scratch(num_experts)
    count = 0
    for s in range(steps):
        lo, hi = ptr_objects[s], ptr_objects[s + 1]
        l = layer[s]
        if l + 1 < num_layers:
            for e in range(num_experts):
                scores[e] = 0
            for i in range(lo, hi):
                row = counts[l, objects[i] - l * num_experts]
                for e in range(num_experts):
                    scores[e] += row[e]
            count = _top(scores, l + 1, num_experts, limit, out, count, keys, best)
        ptr[s + 1] = count
        if previous[2] >= 0 and previous[0] == request[s] and previous[1] + 1 == l:
            for a in range(previous[2]):
                for i in range(lo, hi):
                    counts[previous[1], previous_experts[a], objects[i] - l * num_experts] += 1
        previous[0], previous[1], previous[2] = request[s], l, hi - lo
        for i in range(lo, hi):
            previous_experts[i - lo] = objects[i] - l * num_experts
    return ptr, out[:count]
