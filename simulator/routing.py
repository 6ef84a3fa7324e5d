"""Memory-aware routing (the ruvllm seed): re-route a token with a bonus for resident experts.

The router's logits get `bonus` added where the expert is resident in VRAM, and the top-k of the
result replaces the recorded choice. The price is reported beside the gain: whether the choice
changed, and the routing weight lost, the softmax mass of the recorded choice minus that of the
new one. One njit function, so the reference core and the kernel compute the same floats; it reads
the logits as float16 bits (`simulator.half`), as the trace stores them.
"""

from __future__ import annotations

import numpy as np

from simulator.half import bits, widen
from simulator.jit import njit
from simulator.topk import keep


def reroute(logits: np.ndarray, recorded: np.ndarray, resident: np.ndarray, bonus: float) -> tuple[np.ndarray, float]:
    """(new top-k expert ids by descending boosted score, ties to the lower id; softmax mass lost).

    logits: (E,) of one token, float16 (other floats are rounded to it); recorded: (K,) the recorded choice;
    resident: (E,) nonzero where this layer's expert is in VRAM."""
    chosen = np.empty(recorded.shape[0], np.int16)
    lost = reroute_into(bits(logits), recorded, resident, bonus, chosen, np.empty(recorded.shape[0], np.float64))
    return chosen, lost


@njit(cache=True, _nrt=False)
def reroute_into(logits, recorded, resident, bonus, chosen, kept) -> float:
    """`reroute` without allocating, on the logits' float16 bits (E,) uint16: the new choice goes to `chosen`
    (K,), `kept` (K,) float64 is scratch; returns the weight lost. Most tokens keep their set
    (`_same_choice`); for the others one pass keeps the best K so far in order (equal scores: lower id
    first)."""
    k = recorded.shape[0]
    if _same_choice(logits, recorded, resident, bonus, chosen, kept):
        return 0.0
    least = np.inf  # the K recorded experts score at least this, so a score below it is never kept
    for j in range(k):
        least = min(least, _boosted(logits, resident, bonus, recorded[j]))
    n = 0
    floor = -np.inf  # a score must beat this once K are kept
    for e in range(logits.shape[0]):
        boosted = _boosted(logits, resident, bonus, e)
        if boosted < least or boosted <= floor:
            continue
        n = keep(kept, chosen, 0, n, k, boosted, e)
        if n == k:
            floor = kept[k - 1]
    for j in range(k):  # the same experts, in any order: no weight is lost
        found = False
        for i in range(k):
            found = found or chosen[j] == recorded[i]
        if not found:
            break
    else:
        return 0.0
    top = -np.inf
    for e in range(logits.shape[0]):
        top = max(top, _logit(logits, e))
    total = 0.0
    for e in range(logits.shape[0]):
        total += np.exp(_logit(logits, e) - top)
    lost = 0.0
    for j in range(k):
        lost += (np.exp(_logit(logits, recorded[j]) - top) - np.exp(_logit(logits, chosen[j]) - top)) / total
    return max(lost, 0.0)


@njit(cache=True, _nrt=False, inline="always")
def _same_choice(logits, recorded, resident, bonus, chosen, kept) -> bool:
    """Whether the boosted top-K is the recorded set, as it is for most tokens; if so `chosen` holds it by
    descending boosted score. Sorting the K recorded experts finds the weakest, w; the set stands when
    exactly K experts rank at or above w, counted in one branch-free pass over E that the compiler
    vectorises: re-routing the 1.25M tokens of a 10M-access trace took 0.35 s so, 0.92 s keeping the
    best K of all E for every token."""
    k = recorded.shape[0]
    for j in range(k):  # insertion sort by (boosted score descending, id ascending)
        e = recorded[j]
        score = _boosted(logits, resident, bonus, e)
        i = j
        while i > 0 and (kept[i - 1] < score or (kept[i - 1] == score and chosen[i - 1] > e)):
            kept[i] = kept[i - 1]
            chosen[i] = chosen[i - 1]
            i -= 1
        if i > 0 and chosen[i - 1] == e:  # a repeated expert: leave it to the general pass
            return False
        kept[i] = score
        chosen[i] = e
    weakest, least = chosen[k - 1], kept[k - 1]
    count = 0
    for e in range(logits.shape[0]):
        score = _boosted(logits, resident, bonus, e)
        count += (score > least) | ((score == least) & (e <= weakest))
    return count == k


@njit(cache=True, _nrt=False, inline="always")
def _boosted(logits, resident, bonus, e) -> float:
    """Expert e's score: its logit, plus the bonus when resident."""
    return _logit(logits, e) + bonus if resident[e] else _logit(logits, e)


@njit(cache=True, _nrt=False, inline="always")
def _logit(logits, e) -> float:
    """Logit e of float16 bits, as float64."""
    return np.float64(widen(logits[e]))
