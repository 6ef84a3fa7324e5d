"""Binary min-heap primitives over parallel (key, object) arrays, ordered by (key, object id).

The demand loop and the miss-ratio curves keep lazy heaps: entries are pushed whenever a key
changes and stale ones are skipped when they reach the top, so one heap needs no decrease-key and
no position index.
"""

from __future__ import annotations

from simulator.jit import njit


@njit(cache=True, _nrt=False)
def less(k1, o1, k2, o2):
    return k1 < k2 or (k1 == k2 and o1 < o2)


@njit(cache=True, _nrt=False)
def sift_up(hk, ho, i):
    while i > 0:
        parent = (i - 1) // 2
        if not less(hk[i], ho[i], hk[parent], ho[parent]):
            break
        hk[i], hk[parent] = hk[parent], hk[i]
        ho[i], ho[parent] = ho[parent], ho[i]
        i = parent


@njit(cache=True, _nrt=False)
def sift_down(hk, ho, n, i):
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and less(hk[left + 1], ho[left + 1], hk[left], ho[left]):
            child = left + 1
        if not less(hk[child], ho[child], hk[i], ho[i]):
            break
        hk[i], hk[child] = hk[child], hk[i]
        ho[i], ho[child] = ho[child], ho[i]
        i = child
