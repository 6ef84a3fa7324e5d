"""Miss-ratio curves over every capacity from one pass: stack distances (Mattson et al., 1970).

LRU and Belady are stack algorithms: a cache of c objects holds the top c of one priority stack,
so an access hits at every capacity >= its stack depth. One pass that records each access's depth
gives the misses of all capacities at once. This is the plain demand-caching setting (global,
single tier, one request per expert, equal expert sizes), where results equal libCacheSim's.

- LRU: the depth is 1 + the number of distinct objects used since the last use, counted with a
  Fenwick tree over time that is compacted when full, so memory stays O(objects).
- Belady: the stack is ordered by next use. On an access at depth d, the new top is the object;
  walking down to d, each position keeps the sooner-used of (itself, the carried object), so only
  positions whose next use beats everything above them change. A max segment tree over positions
  finds each such position in O(log n), so a step costs O(log n) per changed position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class MissRatioCurve:
    """Misses at capacities 1..n objects: `misses[c - 1]`; compulsory misses are the first uses."""

    policy: str
    accesses: int
    compulsory: int
    misses: np.ndarray  # (n,) int64

    def at(self, capacity: int) -> int:
        return int(self.misses[min(capacity, len(self.misses)) - 1])

    def ratios(self) -> np.ndarray:
        return self.misses / max(self.accesses, 1)


def _curve(policy: str, depths: np.ndarray, cold: int, accesses: int) -> MissRatioCurve:
    """misses(c) = cold + accesses whose depth exceeds c."""
    deeper = depths[::-1].cumsum()[::-1]  # deeper[d-1] = accesses with depth >= d
    misses = cold + np.append(deeper[1:], 0)
    return MissRatioCurve(policy, accesses, cold, misses.astype(np.int64))


@njit(cache=True)
def _fenwick_add(tree, i, delta):
    while i < tree.shape[0]:
        tree[i] += delta
        i += i & -i


@njit(cache=True)
def _fenwick_sum(tree, i):
    total = 0
    while i > 0:
        total += tree[i]
        i -= i & -i
    return total


@njit(cache=True)
def _lru_depths(objects, num_objects):
    depths = np.zeros(num_objects, np.int64)
    last = np.zeros(num_objects, np.int64)  # time stamp of the last use, 0 = never
    width = 2 * num_objects + 2
    tree = np.zeros(width + 1, np.int64)
    now = 0
    cold = 0
    for a in range(objects.shape[0]):
        obj = objects[a]
        if now + 1 > width:  # compact: renumber live stamps 1..m in order
            live = np.flatnonzero(last)
            order = live[np.argsort(last[live])]
            tree[:] = 0
            for rank in range(order.shape[0]):
                last[order[rank]] = rank + 1
                _fenwick_add(tree, rank + 1, 1)
            now = order.shape[0]
        now += 1
        if last[obj] == 0:
            cold += 1
        else:
            depth = _fenwick_sum(tree, now - 1) - _fenwick_sum(tree, last[obj]) + 1
            depths[depth - 1] += 1
            _fenwick_add(tree, last[obj], -1)
        last[obj] = now
        _fenwick_add(tree, now, 1)
    return depths, cold


def lru_curve(objects: np.ndarray, num_objects: int) -> MissRatioCurve:
    """LRU misses at every capacity, from one pass over the access stream."""
    depths, cold = _lru_depths(np.ascontiguousarray(objects, np.int32), num_objects)
    return _curve("lru", depths, cold, len(objects))


@njit(cache=True)
def _seg_set(tree, size, pos, value):
    i = pos + size
    tree[i] = value
    i //= 2
    while i >= 1:
        tree[i] = max(tree[2 * i], tree[2 * i + 1])
        i //= 2


@njit(cache=True)
def _seg_first_greater(tree, size, lo, hi, value, left, right):
    """Smallest position p in [lo, hi) whose value is > `value`, or -1: visit the O(log n) nodes that
    cover the range from left to right (`left`, `right`: scratch), then descend into the first one
    whose maximum is > value."""
    n_left = n_right = 0
    lo += size
    hi += size
    while lo < hi:
        if lo & 1:
            left[n_left] = lo
            n_left += 1
            lo += 1
        if hi & 1:
            hi -= 1
            right[n_right] = hi
            n_right += 1
        lo >>= 1
        hi >>= 1
    for k in range(n_left + n_right):
        node = left[k] if k < n_left else right[n_right - 1 - (k - n_left)]
        if tree[node] > value:
            while node < size:
                node = 2 * node if tree[2 * node] > value else 2 * node + 1
            return node - size
    return -1


@njit(cache=True)
def _opt_depths(objects, next_use, num_objects):
    size = 1
    while size < num_objects + 1:
        size *= 2
    tree = np.full(2 * size, -1, np.int64)  # next use per stack position (0-based positions)
    stack = np.full(num_objects + 1, -1, np.int64)
    pos = np.full(num_objects, -1, np.int64)
    depths = np.zeros(num_objects, np.int64)
    height = 0
    cold = 0
    left = np.empty(64, np.int64)
    right = np.empty(64, np.int64)
    for a in range(objects.shape[0]):
        obj = objects[a]
        nxt = next_use[a]
        d = pos[obj]
        if d < 0:
            cold += 1
            d = height
            height += 1
        else:
            depths[d] += 1
        if d > 0:
            carry = stack[0]
            value = tree[size]
            i = 0
            while True:
                j = _seg_first_greater(tree, size, i + 1, d, value, left, right)
                if j < 0:
                    break
                other = stack[j]
                other_value = tree[size + j]
                stack[j] = carry
                pos[carry] = j
                _seg_set(tree, size, j, value)
                carry, value, i = other, other_value, j
            stack[d] = carry
            pos[carry] = d
            _seg_set(tree, size, d, value)
        stack[0] = obj
        pos[obj] = 0
        _seg_set(tree, size, 0, nxt)
    return depths, cold


def belady_curve(objects: np.ndarray, next_use: np.ndarray, num_objects: int) -> MissRatioCurve:
    """Belady misses at every capacity, from one pass; `next_use[a]` is the next index of objects[a]."""
    depths, cold = _opt_depths(np.ascontiguousarray(objects, np.int32), np.ascontiguousarray(next_use, np.int64),
                               num_objects)
    return _curve("belady", depths, cold, len(objects))
