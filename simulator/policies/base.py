"""The hooks every policy implements, and the view of a tier a policy is allowed to see.

The core calls, per tier: `on_step` once per step (with the step's chosen objects), `on_hint` with
the prefetcher's prediction, `on_hit` and
`on_insert` as objects are used or admitted, `on_remove` when they leave, `admit` before admitting,
and `victim` until the incoming object fits. A policy never sees files, tensors or clocks; `tick`
is the core's event counter. `KeyedPolicy` is the shared shape of policies that rank residents by
one integer key and evict the smallest (ties: the lower object id); `QueuedPolicy` that of policies
made of FIFO queues (S3-FIFO, ARC).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from traces.errors import MoecacheError


@dataclass(frozen=True)
class TierView:
    """What a policy knows about the tier it manages. Objects are `layer * num_experts + expert`."""

    num_layers: int
    num_experts: int
    sizes: np.ndarray  # (L*E,) bytes of each object
    cost: np.ndarray  # (L*E,) seconds to bring the object into this tier from the tier below
    capacity: np.ndarray  # (P,) bytes per partition: one per layer, or one for the whole tier
    per_layer: bool
    future: np.ndarray | None = None  # (L*E,) next access index of each object, kept current by the core

    def layer_of(self, obj: int) -> int:
        return obj // self.num_experts

    def partition(self, obj: int) -> int:
        return self.layer_of(obj) if self.per_layer else 0

    def same_partition(self, a: int, b: int) -> bool:
        return not self.per_layer or self.layer_of(a) == self.layer_of(b)


@dataclass(frozen=True)
class NoParams:
    """This policy has no parameters."""

    def validate(self) -> NoParams:
        return self


class Policy:
    """Admit everything, never evict: the defaults that concrete policies override."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    needs_future: ClassVar[bool] = False

    def __init__(self, params: object, tier: TierView) -> None:
        self.params = params
        self.tier = tier

    def on_step(self, step: int, layer: int, objects: Sequence[int]) -> None:
        """A step at `layer` chose `objects` (called before any of them is looked up)."""

    def on_hint(self, step: int, objects: Sequence[int]) -> None:
        """The prefetcher expects `objects` at the next layer step (called before prefetching them)."""

    def on_hit(self, obj: int, tick: int) -> None:
        """`obj`, resident in this tier, was used."""

    def on_insert(self, obj: int, tick: int) -> None:
        """`obj` became resident (or, in RAM under inclusion, left VRAM and became evictable again)."""

    def on_remove(self, obj: int) -> None:
        """`obj` left this tier, or stopped being evictable from it."""

    def admit(self, obj: int) -> bool:
        return True

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        """The resident to evict so that `incoming` fits, or None to bypass `incoming`."""
        return None

    @staticmethod
    def fast_state(params: object, vram: TierView, ram: TierView | None) -> tuple:
        """The empty state of this policy's fast rules (a NamedTuple registered with `fast.register`)."""
        raise NotImplementedError


class KeyedPolicy(Policy):
    """Residents ranked by an integer key kept per object; evict the smallest (rank, object id)."""

    def __init__(self, params: object, tier: TierView) -> None:
        super().__init__(params, tier)
        self.keys: dict[int, int] = {}

    def on_remove(self, obj: int) -> None:
        self.keys.pop(obj, None)

    def rank(self, obj: int) -> tuple[int, ...]:
        return (self.keys[obj],)

    def victim(self, incoming: int, pinned: Container[int]) -> int | None:
        best: tuple[tuple[int, ...], int] | None = None
        for obj in self.keys:
            if obj in pinned or not self.tier.same_partition(obj, incoming):
                continue
            candidate = (self.rank(obj), obj)
            if best is None or candidate < best:
                best = candidate
        return None if best is None else best[1]


class QueuedPolicy(Policy):
    """Residents (and ghosts) kept in `num_queues` FIFO queues per partition, oldest first, with their bytes."""

    num_queues: ClassVar[int] = 1

    def __init__(self, params: object, tier: TierView) -> None:
        super().__init__(params, tier)
        parts = len(tier.capacity)
        self.queues = [[OrderedDict() for _ in range(self.num_queues)] for _ in range(parts)]
        self.used = np.zeros((parts, self.num_queues), np.int64)

    def queue_of(self, obj: int) -> int:
        return next(q for q, queue in enumerate(self.queues[self.tier.partition(obj)]) if obj in queue)

    def add(self, obj: int, q: int) -> None:
        """`obj` becomes the newest of queue q of its partition."""
        part = self.tier.partition(obj)
        self.queues[part][q][obj] = None
        self.used[part, q] += self.tier.sizes[obj]

    def drop(self, obj: int, q: int) -> None:
        part = self.tier.partition(obj)
        del self.queues[part][q][obj]
        self.used[part, q] -= self.tier.sizes[obj]


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """One clear line for a parameter outside [low, high]."""
    if value < low or (high is not None and value > high):
        bound = f"within {low}..{high}" if high is not None else f"at least {low}"
        raise MoecacheError(f"policy parameter {name}={value} must be {bound}")
