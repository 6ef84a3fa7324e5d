"""The numba loop behind `traces.synth`: each choice depends on the previous token and layer."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sample(cdf: np.ndarray, u: float) -> int:
    return min(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


@njit(cache=True)
def _distinct(candidate: int, chosen: np.ndarray, count: int, rank: np.ndarray, order: np.ndarray) -> int:
    """`candidate`, or the next expert in popularity order not yet among `chosen[:count]`."""
    E = len(order)
    position = rank[candidate]
    for _ in range(E):
        clash = False
        for i in range(count):
            if chosen[i] == candidate:
                clash = True
                break
        if not clash:
            return candidate
        position = (position + 1) % E
        candidate = order[position]
    return candidate


@njit(cache=True)
def generate_choices(first: np.ndarray, cdf: np.ndarray, rank: np.ndarray, order: np.ndarray,
                     successor: np.ndarray, locality: float, cross_layer: float, lookahead_accuracy: float,
                     u: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Experts (T, L, K) and lookahead (T, L, K) for T tokens.

    first (T,) marks a request's first token; cdf (L, E) cumulative popularity; rank/order (L, E)
    popularity rank of each expert and experts by rank; successor (L, E) the expert that layer l's
    expert e pulls in at layer l + 1; u (T, L, K, 3) uniforms; prev (L, K) the last token's choices,
    updated in place so chunks continue one another.
    """
    T, L, K = u.shape[0], u.shape[1], u.shape[2]
    experts = np.empty((T, L, K), dtype=np.int16)
    for t in range(T):
        for l in range(L):
            for j in range(K):
                draw = u[t, l, j, 0]
                if not first[t] and draw < locality:
                    candidate = prev[l, j]
                elif l > 0 and draw < locality + cross_layer:
                    candidate = successor[l - 1, experts[t, l - 1, j]]
                else:
                    candidate = _sample(cdf[l], u[t, l, j, 1])
                experts[t, l, j] = _distinct(candidate, experts[t, l], j, rank[l], order[l])
            for j in range(K):
                prev[l, j] = experts[t, l, j]
    lookahead = np.full((T, L, K), -1, dtype=np.int16)
    for t in range(T):
        for l in range(L - 1):
            for j in range(K):
                draw = u[t, l, j, 2]
                if draw < lookahead_accuracy:
                    candidate = experts[t, l + 1, j]
                else:  # rescale the rest of the draw to a fresh uniform
                    candidate = _sample(cdf[l + 1], (draw - lookahead_accuracy) / (1.0 - lookahead_accuracy))
                lookahead[t, l, j] = _distinct(candidate, lookahead[t, l], j, rank[l + 1], order[l + 1])
    return experts, lookahead
