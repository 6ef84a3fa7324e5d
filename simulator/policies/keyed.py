"""Fast rules shared by key-ranked policies (`base.KeyedPolicy`): evict the smallest (key, object id).

Each tier keeps one indexed min-heap of (key, object) per heap group (one per layer with per-layer
partitions, else one), holding exactly the tier's candidates (evictable residents): a changed key
moves its entry up or down in place, a removed candidate leaves at once, so a heap never holds more
entries than its group has objects. The victim is the smallest unpinned entry, found by walking down
from the root past pinned entries only. A policy's fast rules only say what the key becomes
(`set_key`). The helpers are inlined (`inline="always"`), as a call would pass every array of the
state field by field. A policy may ask for its per-layer groups to be scanned instead (`make_keyed`'s
`scan`): no heap, every key in place, and the victim the least unpinned key of the layer's E, found by
two passes that the compiler vectorises. That is faster where a use moves a key either way (Belady,
kernel alone, per-layer modes with 128 experts a layer: 1.07x with lookahead to 1.4x with two tiers),
slower where a use sends the key to the bottom and the root is the victim (affinity, up to 1.2x, which
has since left the heaps for an ordered list: `simulator.policies.affinity`).

State fields (every keyed policy's NamedTuple has them, in this order):
  key (2, n) int64: each candidate's key, NO_KEY if none (kept where scanned: the candidates are its keys),
  pos (2, n) int64: heap index of each candidate, -1 if not a candidate (unused where scanned),
  hk (2, H, C) int64 / ho (2, H, C) int32: heap keys and objects, hn (2, H) int64: heap sizes,
  stack (2, n) int64: the walk's stack,
  par (8,) int64: [H, E, scanned, policy scalars from SCALARS on].
Legend: n objects, H heaps per tier, C entries per heap (its group's objects), E experts per layer.
"""

from __future__ import annotations

import numpy as np

from simulator.heap import less
from simulator.jit import njit
from simulator.policies.base import TierView
from simulator.policies.fast import CPU_COMPUTE, PIN, STAMP, UNPINNED, pinned, state_class

HEAPS, EXPERTS, SCANNED, SCALARS = range(4)
NO_KEY = np.iinfo(np.int64).max
FIELDS = [("key", np.ndarray), ("pos", np.ndarray), ("hk", np.ndarray), ("ho", np.ndarray), ("hn", np.ndarray),
          ("stack", np.ndarray), ("par", np.ndarray)]


def keyed_state_class(name: str, module: str) -> type:
    return state_class(name, module, FIELDS)


def make_keyed(cls: type, vram: TierView, par: tuple[int, ...] = (), scan: bool = False) -> tuple:
    """An empty keyed state: one heap per partition, or with per-layer partitions and `scan`, none."""
    layers, e = vram.num_layers, vram.num_experts
    n = layers * e
    heaps = layers if vram.per_layer else 1
    width = e if heaps > 1 else n
    scalars = np.zeros(8, np.int64)
    scalars[:SCALARS] = heaps, e, scan and heaps > 1
    scalars[SCALARS:SCALARS + len(par)] = par
    return cls(key=np.full((2, n), NO_KEY, np.int64), pos=np.full((2, n), -1, np.int64),
               hk=np.zeros((2, heaps, width), np.int64), ho=np.zeros((2, heaps, width), np.int32),
               hn=np.zeros((2, heaps), np.int64), stack=np.zeros((2, n), np.int64), par=scalars)


@njit(cache=True, _nrt=False, inline="always")
def heap_of(ps, obj):
    return obj // ps.par[EXPERTS] if ps.par[HEAPS] > 1 else 0


@njit(cache=True, _nrt=False, inline="always")
def _place(ps, t, h, i, k, obj):
    ps.hk[t, h, i] = k
    ps.ho[t, h, i] = obj
    ps.pos[t, obj] = i


@njit(cache=True, _nrt=False, inline="always")
def _up(ps, t, h, i):
    """Move entry i of heap (t, h) up to its place; returns where it landed."""
    k, obj = ps.hk[t, h, i], ps.ho[t, h, i]
    while i > 0:
        parent = (i - 1) // 2
        if not less(k, obj, ps.hk[t, h, parent], ps.ho[t, h, parent]):
            break
        _place(ps, t, h, i, ps.hk[t, h, parent], ps.ho[t, h, parent])
        i = parent
    _place(ps, t, h, i, k, obj)
    return i


@njit(cache=True, _nrt=False, inline="always")
def _down(ps, t, h, i):
    """Move entry i of heap (t, h) down to its place."""
    n = ps.hn[t, h]
    k, obj = ps.hk[t, h, i], ps.ho[t, h, i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and less(ps.hk[t, h, child + 1], ps.ho[t, h, child + 1], ps.hk[t, h, child],
                                  ps.ho[t, h, child]):
            child += 1
        if not less(ps.hk[t, h, child], ps.ho[t, h, child], k, obj):
            break
        _place(ps, t, h, i, ps.hk[t, h, child], ps.ho[t, h, child])
        i = child
    _place(ps, t, h, i, k, obj)


@njit(cache=True, _nrt=False, inline="always")
def _fix(ps, t, h, i):
    if _up(ps, t, h, i) == i:
        _down(ps, t, h, i)


@njit(cache=True, _nrt=False, inline="always")
def set_key(ps, t, obj, key):
    """`obj` is a candidate of tier t with rank `key`."""
    if ps.par[SCANNED]:
        ps.key[t, obj] = key
        return
    h = heap_of(ps, obj)
    i = ps.pos[t, obj]
    if i < 0:
        i = ps.hn[t, h]
        ps.hn[t, h] = i + 1
    ps.hk[t, h, i] = key
    ps.ho[t, h, i] = obj
    _fix(ps, t, h, i)


@njit(cache=True, _nrt=False, inline="always")
def smallest(ps, cs, t, h):
    """The smallest unpinned entry of heap (t, h); -1 if none. Only pinned entries are descended through:
    an unpinned one is smaller than everything below it."""
    victim, vk = -1, 0
    depth = 0
    if ps.hn[t, h] > 0:
        ps.stack[t, 0] = 0
        depth = 1
    n = ps.hn[t, h]
    while depth > 0:
        depth -= 1
        i = ps.stack[t, depth]
        k, obj = ps.hk[t, h, i], ps.ho[t, h, i]
        if victim >= 0 and not less(k, obj, vk, victim):
            continue
        if not pinned(cs, t, obj):
            victim, vk = obj, k
            continue
        for child in (2 * i + 1, 2 * i + 2):
            if child < n:
                ps.stack[t, depth] = child
                depth += 1
    return victim


@njit(cache=True, _nrt=False, inline="always")
def on_remove(ps, cs, t, obj):
    if ps.par[SCANNED]:
        ps.key[t, obj] = NO_KEY
        return
    i = ps.pos[t, obj]
    if i < 0:
        return
    ps.pos[t, obj] = -1
    h = heap_of(ps, obj)
    last = ps.hn[t, h] - 1
    ps.hn[t, h] = last
    if i < last:
        _place(ps, t, h, i, ps.hk[t, h, last], ps.ho[t, h, last])
        _fix(ps, t, h, i)


@njit(cache=True, _nrt=False, inline="always")
def victim(ps, cs, t, incoming):
    if ps.par[SCANNED]:
        return _least(ps, cs, t, heap_of(ps, incoming))
    return smallest(ps, cs, t, heap_of(ps, incoming))


@njit(cache=True, _nrt=False, inline="always")
def _least(ps, cs, t, layer):
    """The unpinned candidate of the layer with the least key (ties: lower id), -1 if none: the least key
    first, pinned objects read as NO_KEY, then its first holder, each in one branch-free pass over E."""
    e = ps.par[EXPERTS]
    lo = layer * e
    keys, pins = ps.key[t, lo:lo + e], cs.obj[PIN, lo:lo + e]
    stamp = cs.scal[STAMP] if t == 0 or cs.cfg[CPU_COMPUTE] else UNPINNED
    least = NO_KEY
    for i in range(e):
        least = min(least, NO_KEY if pins[i] == stamp else keys[i])
    if least == NO_KEY:
        return -1
    at = e
    for i in range(e):
        at = min(at, i if keys[i] == least and pins[i] != stamp else e)
    return lo + at
