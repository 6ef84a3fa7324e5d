"""The access stream of a trace and every access's next use: what Belady and the curves read ahead."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.jit import njit
from simulator.steps import iter_steps
from traces.reader import Trace

NEVER = np.int64(1) << 62  # next use of an object that is not used again


@njit(cache=True)
def _next_uses(objects: np.ndarray, next_use: np.ndarray, last: np.ndarray) -> None:
    """Backwards: next_use[a] = the next index with the same object, NEVER if none; `last` ends as
    each object's first index."""
    for a in range(objects.shape[0] - 1, -1, -1):
        obj = objects[a]
        next_use[a] = last[obj]
        last[obj] = a


def access_chunks(trace: Trace) -> Iterator[np.ndarray]:
    """The objects of every access, in order, one row group at a time."""
    for steps in iter_steps(trace):
        yield steps.objects


def access_stream(trace: Trace) -> np.ndarray:
    """All accesses of a trace as one (A,) int32 array of objects."""
    chunks = list(access_chunks(trace))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def next_uses(objects: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(next use of each access, first use of each object), NEVER where there is none."""
    following = np.empty(len(objects), np.int64)
    first = np.full(num_objects, NEVER, np.int64)
    _next_uses(objects, following, first)
    return following, first


class Future:
    """Next-use indices of every access of a trace, on disk (numpy memmaps in a temporary folder)."""

    def __init__(self, trace: Trace) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="moecache-future-")
        folder = Path(self._dir.name)
        total = 0
        with (folder / "objects.bin").open("wb") as f:  # one pass over the trace, appended as it goes
            for chunk in access_chunks(trace):
                f.write(chunk.astype(np.int32).tobytes())
                total += len(chunk)
        objects = np.memmap(folder / "objects.bin", dtype=np.int32, mode="r", shape=(total,)) if total \
            else np.zeros(0, np.int32)
        self.next_use = np.lib.format.open_memmap(folder / "next.npy", mode="w+", dtype=np.int64,
                                                  shape=(max(total, 1),))
        self.first_use = np.full(trace.meta.num_layers * trace.meta.num_experts, NEVER, np.int64)
        _next_uses(objects, self.next_use[:total], self.first_use)
        del objects

    def close(self) -> None:
        self._dir.cleanup()
