"""Fast rules' building blocks for policies made of FIFO queues (S3-FIFO, ARC), per tier and partition.

The state has `prev`, `nxt` (2, n + Q*P) int64: `simulator.dlist` links, sentinels after the objects;
`queue` (2, n) int64: the queue each object is in (-1 none); `used` (2, P, Q) int64: bytes per queue.
Legend: n objects, P partitions, Q queues per partition, t a tier.
"""

from __future__ import annotations

import numpy as np

from simulator import dlist
from simulator.jit import njit
from simulator.policies.fast import SIZE, partition, pinned


def links(n: int, parts: int, queues: int) -> tuple[np.ndarray, np.ndarray]:
    """(prev, nxt) of empty queues for both tiers: every sentinel points at itself."""
    nodes = np.arange(n + queues * parts, dtype=np.int64)
    return np.stack([nodes, nodes]), np.stack([nodes, nodes])


@njit(cache=True, _nrt=False)
def head(ps, part, q):
    return ps.queue.shape[1] + ps.used.shape[2] * part + q


@njit(cache=True, _nrt=False)
def add(ps, cs, t, obj, q):
    """`obj` becomes the newest of queue q of its partition."""
    insert_after(ps, cs, t, obj, q, head(ps, partition(cs, obj), q))


@njit(cache=True, _nrt=False)
def insert_after(ps, cs, t, obj, q, newer):
    """`obj` joins queue q of its partition just older than `newer`, a node of that queue or its sentinel (then
    `obj` is the newest)."""
    dlist.push_front(ps.prev[t], ps.nxt[t], newer, obj)
    ps.queue[t, obj] = q
    ps.used[t, partition(cs, obj), q] += cs.obj[SIZE, obj]


@njit(cache=True, _nrt=False)
def drop(ps, cs, t, obj):
    dlist.unlink(ps.prev[t], ps.nxt[t], obj)
    ps.used[t, partition(cs, obj), ps.queue[t, obj]] -= cs.obj[SIZE, obj]
    ps.queue[t, obj] = -1


@njit(cache=True, _nrt=False)
def oldest_unpinned(ps, cs, t, part, q):
    """The oldest object of queue q that may be evicted from tier t now; -1 if none."""
    return oldest_unpinned_at(ps, cs, t, head(ps, part, q))


@njit(cache=True, _nrt=False, inline="always")
def oldest_unpinned_at(ps, cs, t, sentinel):
    """The oldest object of the list at `sentinel` (any state with `prev` links: LFU's buckets too) that may be
    evicted from tier t now; -1 if none."""
    node = ps.prev[t, sentinel]
    while node != sentinel and pinned(cs, t, node):
        node = ps.prev[t, node]
    return -1 if node == sentinel else node
