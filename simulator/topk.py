"""The best K so far, kept in order in one pass (re-routing)."""

from __future__ import annotations

from simulator.jit import njit


@njit(cache=True, _nrt=False, inline="always")
def keep(kept, ids, base, n, limit, value, ident):
    """Insert (value, ident) into the best-first list ids[base:base + n] (values in kept[:n]) of at most
    `limit` entries, the last dropping out when full; equal values keep the earlier ids ahead. Returns the
    new length. Callers skip values that do not beat kept[limit - 1] once the list is full."""
    i = min(n, limit - 1)
    while i > 0 and kept[i - 1] < value:
        kept[i] = kept[i - 1]
        ids[base + i] = ids[base + i - 1]
        i -= 1
    kept[i] = value
    ids[base + i] = ident
    return min(n + 1, limit)
