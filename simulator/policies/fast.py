"""The contract between the numba kernel (`simulator.kernel`) and each policy's fast rules.

The kernel owns the cache mechanics and a `CoreState`; a policy's file owns its reference class
and its fast rules: a state NamedTuple of its own (its type is what the kernel is specialised on,
so numba compiles one kernel per policy and caches it) and plain functions for the hooks of
`simulator.policies.base.Policy`, written for numba, taking (policy state, core state, ...). A
policy registers them with `register`; hooks it leaves out keep the defaults below (admit all,
never evict, ignore the rest).

Legend: n objects (L*E), P partitions, t a tier (0 VRAM, 1 RAM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simulator.jit import njit

# cfg fields
PER_LAYER, INCLUSIVE, SEQUENTIAL, CPU_COMPUTE, HAS_RAM, LAYERS, EXPERTS, HAS_FUTURE, ROUTING = range(9)
CFG_FIELDS = 9
# scal fields
TICK, STAMP, N_EV = range(3)
# rows of CoreState.obj
SIZE, RES_VRAM, RES_RAM, PIN, NEXT, MARK = range(6)
OBJ_ROWS = 6
# rows of CoreState.part: capacity and use of tier t are rows t and 2 + t
CAP, USED = 0, 2
UNPINNED = -3  # a stamp no object carries


class CoreState(NamedTuple):
    """The kernel's own state, packed into few arrays so that calls stay cheap."""

    cfg: np.ndarray  # (CFG_FIELDS,) int64: mode and shape
    scal: np.ndarray  # (3,) int64: event counter, pin stamp, events buffered
    obj: np.ndarray  # (OBJ_ROWS, n) int64: size, resident in VRAM / RAM, pin stamp, next use (Belady), re-routing's
    # set stamp
    part: np.ndarray  # (4, P) int64: capacity of VRAM, RAM; bytes used in VRAM, RAM
    ev_step: np.ndarray  # (EVENTS,) int64: step of each buffered event
    ev_kind: np.ndarray  # (EVENTS,) int8: its kind (simulator.events)
    ev_obj: np.ndarray  # (EVENTS,) int32: its object
    fl: np.ndarray  # (4,) float64: routing bonus; routing changed steps, tokens, weight lost


@njit(cache=True, _nrt=False)
def partition(cs: CoreState, obj: int) -> int:
    return obj // cs.cfg[EXPERTS] if cs.cfg[PER_LAYER] else 0


@njit(cache=True, _nrt=False)
def partition_range(cs: CoreState, obj: int) -> tuple[int, int]:
    """The objects that share `obj`'s partition: its layer with per-layer partitions, else all."""
    if cs.cfg[PER_LAYER]:
        e = cs.cfg[EXPERTS]
        layer = obj // e
        return layer * e, (layer + 1) * e
    return 0, cs.obj.shape[1]


@njit(cache=True, _nrt=False)
def pinned(cs: CoreState, t: int, obj: int) -> bool:
    """Whether `obj` may not be evicted from tier t now; RAM residents are pinned only in cpu-compute mode."""
    stamp = cs.scal[STAMP] if t == 0 or cs.cfg[CPU_COMPUTE] else UNPINNED
    return cs.obj[PIN, obj] == stamp


@njit(cache=True, _nrt=False)
def tiers(cs: CoreState) -> int:
    return 2 if cs.cfg[HAS_RAM] else 1


def ignore_step(ps, cs, step, layer, objs):
    """Default on_step and on_hint (objs: the step's objects, or the prefetcher's hints)."""


def ignore(ps, cs, t, obj, tick):
    """Default on_hit and on_insert."""


def ignore_removal(ps, cs, t, obj):
    """Default on_remove."""


def admit_all(ps, cs, t, obj):
    return True


def never_evict(ps, cs, t, incoming):
    return -1


@dataclass(frozen=True)
class Rules:
    """A policy's fast hooks, as plain functions numba compiles into the kernel."""

    on_step: Callable = ignore_step
    on_hint: Callable = ignore_step
    on_hit: Callable = ignore
    on_insert: Callable = ignore
    on_remove: Callable = ignore_removal
    admit: Callable = admit_all
    victim: Callable = never_evict
    inline: bool = False  # inline the hooks into the kernel: faster where they are many small calls, slower to
    # compile (see `simulator.kernel`)


RULES: dict[type, Rules] = {}


def register(state: type, rules: Rules) -> None:
    """Make `state` (a NamedTuple class, one per policy) select `rules` in the kernel. Its name must be unique:
    numba names compiled functions after their argument types, so two states of one name would share a kernel."""
    if any(other.__name__ == state.__name__ for other in RULES if other is not state):
        raise ValueError(f"a policy state named {state.__name__} is already registered")
    RULES[state] = rules


def state_class(name: str, module: str, fields: list[tuple[str, type]]) -> type:
    """A NamedTuple class of its own for one policy (picklable, so the compiled kernel can be cached)."""
    cls = NamedTuple(name, fields)
    cls.__module__ = module
    return cls
