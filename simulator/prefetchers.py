"""Prefetchers: after a step's demand accesses, name the experts the next layer step will need.

Each one learns from the recorded routing only (never from cache state), so the same plan serves
every policy of a comparison, and the engine can drive the same objects online: `predict(s)`
then `observe(s)` for each step. The target is the next layer (layer 0 of the next token after
the last layer). At most `limit` objects per step, in order of confidence. These classes are the
reference; `fast_plan` gives the same plan for a chunk of steps from `simulator.prefetch_kernel`
(numba), with learning state of its own.

- `lookahead`: the trace's lookahead column (the next layer's gate on this layer's input, as in
  mixtral-offloading and Pre-gated MoE); nothing at the last layer.
- `affinity`: the next layer's experts by affinity score, i.e. most recently chosen first (see
  `simulator.policies.affinity`).
- `transitions`: counts of (expert at layer l -> expert at layer l+1) within a token, learned
  online; the next layer's experts with the highest summed counts from this step's experts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from traces.errors import MoecacheError

if TYPE_CHECKING:
    from simulator.steps import Steps


class Prefetcher:
    name = "none"

    def __init__(self, num_layers: int, num_experts: int, limit: int) -> None:
        self.num_layers, self.num_experts, self.limit = num_layers, num_experts, limit

    def next_layer(self, layer: int) -> int:
        return (layer + 1) % self.num_layers

    def predict(self, steps: Steps, s: int) -> list[int]:
        return []

    def observe(self, steps: Steps, s: int) -> None:
        """Learn from step s (after predict)."""

    def fast_plan(self, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
        """`plan(self, steps)` from the numba kernels (a prefetcher is driven one way or the other, not both)."""
        return np.zeros(len(steps) + 1, np.int64), np.zeros(0, np.int32)

    def _top(self, layer: int, scores: np.ndarray) -> list[int]:
        """The `limit` experts of `layer` with the highest positive score (ties: lower id)."""
        order = np.argsort(-scores, kind="mergesort")[: self.limit]
        return [layer * self.num_experts + int(e) for e in order if scores[e] > 0]


class LookaheadPrefetcher(Prefetcher):
    name = "lookahead"

    @staticmethod
    def _require_column(steps: Steps) -> None:
        if steps.rows.lookahead is None:
            raise MoecacheError("the lookahead prefetcher needs a trace with a lookahead column; "
                                "record with --lookahead")

    def predict(self, steps: Steps, s: int) -> list[int]:
        layer = int(steps.layer[s])
        self._require_column(steps)
        if layer + 1 >= self.num_layers:
            return []
        base = (layer + 1) * self.num_experts
        out: list[int] = []
        for row in steps.rows.lookahead[steps.row_ptr[s]:steps.row_ptr[s + 1]]:
            for e in row:
                if e >= 0 and base + int(e) not in out:
                    out.append(base + int(e))
        return out[: self.limit]

    def fast_plan(self, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
        from simulator.prefetch_kernel import lookahead_plan

        self._require_column(steps)
        return lookahead_plan(steps.layer, steps.row_ptr, steps.rows.lookahead, self.num_layers, self.num_experts,
                              self.limit)


class AffinityPrefetcher(Prefetcher):
    name = "affinity"

    def __init__(self, num_layers: int, num_experts: int, limit: int) -> None:
        super().__init__(num_layers, num_experts, limit)
        self.recency = np.zeros(num_layers * num_experts, np.int64)  # 1 + step last chosen; 0 never
        self.step = 0
        self.clock = np.zeros(1, np.int64)  # fast_plan's step counter

    def predict(self, steps: Steps, s: int) -> list[int]:
        layer = self.next_layer(int(steps.layer[s]))
        e = self.num_experts
        return self._top(layer, self.recency[layer * e:(layer + 1) * e])

    def observe(self, steps: Steps, s: int) -> None:
        self.step += 1
        self.recency[steps.objects[steps.ptr[s]:steps.ptr[s + 1]]] = self.step

    def fast_plan(self, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
        from simulator.prefetch_kernel import affinity_plan

        return affinity_plan(steps.layer, steps.ptr, steps.objects, self.recency, self.clock, self.num_layers,
                             self.num_experts, self.limit)


class TransitionPrefetcher(Prefetcher):
    name = "transitions"

    def __init__(self, num_layers: int, num_experts: int, limit: int) -> None:
        super().__init__(num_layers, num_experts, limit)
        # int32: one count grows by at most 1 per token, and the 6 MiB of int64 counts of a 48-layer,
        # 128-expert model fell out of a 4 MiB L2 cache (the fast plan summed them 10% slower)
        self.counts = np.zeros((num_layers, num_experts, num_experts), np.int32)
        self.previous: tuple[int, int, np.ndarray] | None = None  # (request, layer, experts)
        self.fast_previous = np.array([-1, -1, -1], np.int64)  # fast_plan's (request, layer, expert count)
        self.fast_previous_experts = np.zeros(num_experts, np.int64)

    def _experts(self, steps: Steps, s: int) -> np.ndarray:
        return steps.objects[steps.ptr[s]:steps.ptr[s + 1]] % self.num_experts

    def predict(self, steps: Steps, s: int) -> list[int]:
        layer = int(steps.layer[s])
        if layer + 1 >= self.num_layers:
            return []
        return self._top(layer + 1, self.counts[layer, self._experts(steps, s)].sum(axis=0))

    def observe(self, steps: Steps, s: int) -> None:
        layer, request, experts = int(steps.layer[s]), int(steps.request[s]), self._experts(steps, s)
        if self.previous is not None:
            prev_request, prev_layer, prev_experts = self.previous
            if prev_request == request and prev_layer + 1 == layer:
                self.counts[prev_layer][np.ix_(prev_experts, experts)] += 1
        self.previous = (request, layer, experts)

    def fast_plan(self, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
        from simulator.prefetch_kernel import transitions_plan

        return transitions_plan(steps.layer, steps.request, steps.ptr, steps.objects, self.counts, self.fast_previous,
                                self.fast_previous_experts, self.num_layers, self.num_experts, self.limit)


PREFETCHERS: dict[str, type[Prefetcher]] = {cls.name: cls for cls in (Prefetcher, LookaheadPrefetcher,
                                                                      AffinityPrefetcher, TransitionPrefetcher)}


def make_prefetcher(name: str, num_layers: int, num_experts: int, limit: int) -> Prefetcher:
    if name not in PREFETCHERS:
        raise MoecacheError(f"unknown prefetcher '{name}'; known: {', '.join(PREFETCHERS)}")
    if limit < 1:
        raise MoecacheError("--prefetch-limit must be at least 1")
    return PREFETCHERS[name](num_layers, num_experts, limit)


def plan(prefetcher: Prefetcher, steps: Steps, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Prefetch candidates for every step of a chunk: (ptr (S+1,), objects), like Steps' layout; `fast`: from
    the numba kernels, else from the reference's predict and observe."""
    if fast:
        return prefetcher.fast_plan(steps)
    ptr = np.zeros(len(steps) + 1, np.int64)
    out: list[int] = []
    if type(prefetcher) is Prefetcher:
        return ptr, np.zeros(0, np.int32)
    for s in range(len(steps)):
        out.extend(prefetcher.predict(steps, s))
        prefetcher.observe(steps, s)
        ptr[s + 1] = len(out)
    return ptr, np.asarray(out, np.int32)
