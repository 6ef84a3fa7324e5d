"""Fast rules shared by key-ranked policies (`base.KeyedPolicy`): evict the smallest (key, object id).

Each tier keeps one lazy min-heap of (key, object) per heap group (one per layer with per-layer
partitions or when the policy ranks layers itself, else one): an entry is live while the object is
a candidate and its key unchanged; stale entries are skipped when popped, and a full heap is rebuilt
from the live keys. A policy's fast rules only say what the key becomes (`set_key`).

State fields (every keyed policy's NamedTuple has them, in this order):
  key (2, n) int64, cand (2, n) bool: in the policy's structure (evictable),
  hk (2, H, C) int64 / ho (2, H, C) int32: heap keys and objects, hn (2, H) int64: heap sizes,
  stash (2, n) int64: pinned entries set aside while popping,
  aux (2, n) int64: per-object extra (LFU counts, last chosen step),
  par (8,) int64: [H, E, L, policy scalars...].
Legend: n objects, H heaps per tier, C entries per heap, E experts per layer, L layers.
"""

from __future__ import annotations

import numpy as np

from simulator.heap import sift_down, sift_up
from simulator.jit import njit
from simulator.policies.base import TierView
from simulator.policies.fast import pinned, state_class

HEAPS, EXPERTS, LAYERS = range(3)
FIELDS = [("key", np.ndarray), ("cand", np.ndarray), ("hk", np.ndarray), ("ho", np.ndarray), ("hn", np.ndarray),
          ("stash", np.ndarray), ("aux", np.ndarray), ("par", np.ndarray)]


def keyed_state_class(name: str, module: str) -> type:
    return state_class(name, module, FIELDS)


def make_keyed(cls: type, vram: TierView, per_layer_heaps: bool, aux: int = 0, par: tuple[int, ...] = ()) -> tuple:
    """An empty keyed state; `per_layer_heaps`: one heap per layer (per-layer partitions, or layer-ranked)."""
    layers, e = vram.num_layers, vram.num_experts
    n = layers * e
    heaps = layers if per_layer_heaps else 1
    width = 4 * (e if heaps > 1 else n) + 64
    scalars = np.zeros(8, np.int64)
    scalars[:3] = heaps, e, layers
    scalars[3:3 + len(par)] = par
    return cls(key=np.zeros((2, n), np.int64), cand=np.zeros((2, n), np.bool_),
               hk=np.zeros((2, heaps, width), np.int64), ho=np.zeros((2, heaps, width), np.int32),
               hn=np.zeros((2, heaps), np.int64), stash=np.zeros((2, n), np.int64), aux=np.full((2, n), aux, np.int64),
               par=scalars)


@njit(cache=True, _nrt=False)
def heap_of(ps, obj):
    return obj // ps.par[EXPERTS] if ps.par[HEAPS] > 1 else 0


@njit(cache=True, _nrt=False)
def rebuild(ps, t, h):
    """Drop the stale entries of heap (t, h): one live entry per candidate, then heapify."""
    hk, ho = ps.hk[t, h], ps.ho[t, h]
    e = ps.par[EXPERTS]
    lo, hi = (h * e, (h + 1) * e) if ps.par[HEAPS] > 1 else (0, ps.key.shape[1])
    n = 0
    for obj in range(lo, hi):
        if ps.cand[t, obj]:
            hk[n] = ps.key[t, obj]
            ho[n] = obj
            n += 1
    for i in range(n // 2 - 1, -1, -1):
        sift_down(hk, ho, n, i)
    ps.hn[t, h] = n


@njit(cache=True, _nrt=False)
def set_key(ps, t, obj, key):
    """`obj` is a candidate of tier t with rank `key` (pushes a fresh heap entry)."""
    ps.key[t, obj] = key
    ps.cand[t, obj] = True
    h = heap_of(ps, obj)
    if ps.hn[t, h] == ps.hk.shape[2]:
        rebuild(ps, t, h)
    n = ps.hn[t, h]
    ps.hk[t, h, n] = key
    ps.ho[t, h, n] = obj
    ps.hn[t, h] = n + 1
    sift_up(ps.hk[t, h], ps.ho[t, h], n)


@njit(cache=True, _nrt=False)
def smallest(ps, cs, t, h):
    """The smallest live, unpinned entry of heap (t, h), left in place; -1 if none."""
    hk, ho = ps.hk[t, h], ps.ho[t, h]
    stashed = 0
    victim = -1
    while ps.hn[t, h] > 0:
        k, obj = hk[0], ho[0]
        live = ps.cand[t, obj] and ps.key[t, obj] == k
        if live and not pinned(cs, t, obj):
            victim = obj
            break
        if live:
            ps.stash[t, stashed] = obj
            stashed += 1
        n = ps.hn[t, h] - 1
        hk[0], ho[0] = hk[n], ho[n]
        ps.hn[t, h] = n
        sift_down(hk, ho, n, 0)
    for i in range(stashed):
        obj = ps.stash[t, i]
        n = ps.hn[t, h]
        hk[n], ho[n] = ps.key[t, obj], obj
        ps.hn[t, h] = n + 1
        sift_up(hk, ho, n)
    return victim


@njit(cache=True, _nrt=False)
def on_remove(ps, cs, t, obj):
    ps.cand[t, obj] = False


@njit(cache=True, _nrt=False)
def victim(ps, cs, t, incoming):
    return smallest(ps, cs, t, heap_of(ps, incoming))
