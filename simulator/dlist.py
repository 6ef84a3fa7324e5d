"""Circular doubly linked lists over object ids for the numba kernels (FIFO queues, LRU order).

Nodes are 0..n-1 (objects) and sentinels after them, one per list. From a sentinel, `nxt` runs from
the newest node to the oldest and `prev` the other way, so `prev[head]` is the oldest; an empty
list's sentinel points at itself. Every list must start with `reset`.
"""

from __future__ import annotations

from simulator.jit import njit


@njit(cache=True, _nrt=False, inline="always")
def reset(prev, nxt, head):
    prev[head] = head
    nxt[head] = head


@njit(cache=True, _nrt=False, inline="always")
def unlink(prev, nxt, node):
    nxt[prev[node]] = nxt[node]
    prev[nxt[node]] = prev[node]


@njit(cache=True, _nrt=False, inline="always")
def push_front(prev, nxt, head, node):
    """Make `node` the newest of the list at sentinel `head`."""
    first = nxt[head]
    nxt[node], prev[node] = first, head
    prev[first] = node
    nxt[head] = node
