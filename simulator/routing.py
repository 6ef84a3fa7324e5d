"""Memory-aware routing (the ruvllm seed): re-route a token with a bonus for resident experts.

The router's logits get `bonus` added where the expert is resident in VRAM, and the top-k of the
result replaces the recorded choice. The price is reported beside the gain: whether the choice
changed, and the routing weight lost, the softmax mass of the recorded choice minus that of the
new one. One njit function, so the reference core and the kernel compute the same floats.
"""

from __future__ import annotations

import numpy as np

from simulator.jit import njit


@njit(cache=True)
def reroute(logits: np.ndarray, recorded: np.ndarray, resident: np.ndarray, bonus: float) -> tuple[np.ndarray, float]:
    """(new top-k expert ids by descending boosted score, ties to the lower id; softmax mass lost).

    logits: (E,) float16 of one token; recorded: (K,) the recorded choice; resident: (E,) bool of
    this layer's experts in VRAM."""
    raw = logits.astype(np.float64)
    boosted = raw + bonus * resident.astype(np.float64)
    chosen = np.argsort(-boosted, kind="mergesort")[:recorded.shape[0]].astype(np.int16)
    weights = np.exp(raw - raw.max())
    total = weights.sum()
    lost = 0.0
    for j in range(recorded.shape[0]):
        lost += (weights[recorded[j]] - weights[chosen[j]]) / total
    return chosen, max(lost, 0.0)
