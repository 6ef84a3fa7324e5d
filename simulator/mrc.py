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
- Belady at a few chosen capacities (`belady_points`, e.g. a 32-point curve): the same stack cut
  into buckets at those capacities. An access found in bucket k misses in every smaller cache, each
  of which gives up its member used furthest ahead; that carry passes bucket by bucket through one
  lazy max-heap per bucket, so a step costs O(k log n) whatever the depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.heap import sift_down, sift_up
from simulator.jit import njit


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


@njit(cache=True)
def _bucket_rebuild(b, bucket_of, value, hk, ho, hn):
    n = 0
    for obj in range(bucket_of.shape[0]):
        if bucket_of[obj] == b:
            hk[b, n] = -value[obj]  # max-heap by next use, as a min-heap of negatives
            ho[b, n] = obj
            n += 1
    for i in range(n // 2 - 1, -1, -1):
        sift_down(hk[b], ho[b], n, i)
    hn[b] = n


@njit(cache=True)
def _bucket_push(b, obj, bucket_of, value, hk, ho, hn):
    if hn[b] == hk.shape[1]:
        _bucket_rebuild(b, bucket_of, value, hk, ho, hn)
    i = hn[b]
    hk[b, i] = -value[obj]
    ho[b, i] = obj
    hn[b] = i + 1
    sift_up(hk[b], ho[b], i)


@njit(cache=True)
def _bucket_top(b, bucket_of, value, hk, ho, hn):
    """The member of bucket b used furthest ahead (ties: lower id), left in place; stale entries dropped."""
    while hn[b] > 0:
        key, obj = hk[b, 0], ho[b, 0]
        if bucket_of[obj] == b and -value[obj] == key:
            return obj
        n = hn[b] - 1
        hk[b, 0], ho[b, 0] = hk[b, n], ho[b, n]
        hn[b] = n
        sift_down(hk[b], ho[b], n, 0)
    return -1


@njit(cache=True)
def _bucket_replace_top(b, obj, bucket_of, value, hk, ho, hn):
    """Put `obj` in place of bucket b's top entry (which leaves) and restore the heap."""
    hk[b, 0] = -value[obj]
    ho[b, 0] = obj
    sift_down(hk[b], ho[b], hn[b], 0)


@njit(cache=True)
def _opt_buckets(objects, next_use, num_objects, bounds):
    """Belady at the capacities `bounds` (ascending) in one pass: the priority stack cut into buckets
    between consecutive capacities. An access at bucket k misses in every cache below it; each of
    those caches gives up its member used furthest ahead, which is the max of its last bucket after
    the carry from above arrives, so the carry passes bucket by bucket through per-bucket heaps."""
    buckets = bounds.shape[0] + 1  # the last one is unbounded
    room = np.empty(buckets, np.int64)
    room[0] = bounds[0]
    for b in range(1, buckets - 1):
        room[b] = bounds[b] - bounds[b - 1]
    room[buckets - 1] = num_objects + 1
    width = 2 * max(room[:buckets - 1].max(), 1) + 64
    hk = np.zeros((buckets, max(width, 2 * num_objects + 64)), np.int64)
    ho = np.zeros((buckets, hk.shape[1]), np.int32)
    hn = np.zeros(buckets, np.int64)
    size = np.zeros(buckets, np.int64)
    bucket_of = np.full(num_objects, -1, np.int64)
    value = np.zeros(num_objects, np.int64)
    hist = np.zeros(buckets + 1, np.int64)  # hist[k]: accesses found in bucket k; hist[-1]: first uses
    for a in range(objects.shape[0]):
        obj = objects[a]
        k = bucket_of[obj]
        hist[k if k >= 0 else buckets] += 1
        if k == 0:
            value[obj] = next_use[a]
            _bucket_push(0, obj, bucket_of, value, hk, ho, hn)
            continue
        if k > 0:
            size[k] -= 1
        bucket_of[obj] = -2  # in transit
        carry = -1
        if size[0] == room[0]:
            carry = _bucket_top(0, bucket_of, value, hk, ho, hn)
            value[obj] = next_use[a]
            _bucket_replace_top(0, obj, bucket_of, value, hk, ho, hn)
        else:
            value[obj] = next_use[a]
            size[0] += 1
            _bucket_push(0, obj, bucket_of, value, hk, ho, hn)
        bucket_of[obj] = 0
        b = 1
        while carry >= 0:
            if b == k or size[b] < room[b]:  # the bucket x left, or one not yet full, keeps the carry
                bucket_of[carry] = b
                size[b] += 1
                _bucket_push(b, carry, bucket_of, value, hk, ho, hn)
                break
            top = _bucket_top(b, bucket_of, value, hk, ho, hn)
            if value[carry] < value[top] or (value[carry] == value[top] and carry > top):
                bucket_of[carry] = b  # the bucket's own furthest member moves on instead
                bucket_of[top] = -2
                _bucket_replace_top(b, carry, bucket_of, value, hk, ho, hn)
                carry = top
            b += 1
    return hist


def belady_points(objects: np.ndarray, next_use: np.ndarray, num_objects: int,
                  capacities: np.ndarray) -> np.ndarray:
    """Belady misses at each of `capacities` (ascending, distinct) from one pass; cheaper than the full
    curve when only a few points are wanted."""
    bounds = np.asarray(capacities, np.int64)
    hist = _opt_buckets(np.ascontiguousarray(objects, np.int32), np.ascontiguousarray(next_use, np.int64),
                        num_objects, bounds)
    deeper = hist[::-1].cumsum()[::-1]  # deeper[k] = accesses in bucket >= k, first uses included
    return deeper[1:len(bounds) + 1]
