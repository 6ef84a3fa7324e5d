"""The access stream of a trace and every access's next use: what Belady and the curves read ahead."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from simulator.jit import njit
from simulator.steps import iter_steps, read_ahead
from traces.reader import Trace

NEVER = np.int64(1) << 62  # next use of an object that is not used again


@njit(cache=True, nogil=True)
def _next_uses(objects: np.ndarray, next_use: np.ndarray, last: np.ndarray, offset: int) -> None:
    """Backwards: next_use[a] = the next index (global: + offset) with the same object, or `last`'s entry
    for it (NEVER if none, or the first use after this chunk); `last` ends as each object's first index."""
    for a in range(objects.shape[0] - 1, -1, -1):
        obj = objects[a]
        next_use[a] = last[obj]
        last[obj] = a + offset


def access_chunks(trace: Trace) -> Iterator[np.ndarray]:
    """The objects of every access, in order, one batch of rows at a time."""
    for steps in read_ahead(iter_steps(trace)):
        yield steps.objects


def access_stream(trace: Trace) -> np.ndarray:
    """All accesses of a trace as one (A,) int32 array of objects."""
    chunks = list(access_chunks(trace))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def next_uses(objects: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(next use of each access, first use of each object), NEVER where there is none."""
    following = np.empty(len(objects), np.int64)
    first = np.full(num_objects, NEVER, np.int64)
    _next_uses(objects, following, first, 0)
    return following, first


CHUNK = 1 << 22  # accesses per chunk of the next-use pass and of each read


class Future:
    """Next-use indices of every access of a trace, in a file (8 bytes per access, in a temporary folder).

    One pass over the trace writes the access stream to disk; a second pass, backwards over that file a
    chunk at a time, writes each access's next use. Both files are read and written through plain file
    I/O, never mapped, so they sit in the page cache and not in this process's resident memory, which stays
    bounded by one chunk however long the trace is."""

    def __init__(self, trace: Trace) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="moecache-future-")
        folder = Path(self._dir.name)
        total = 0
        with (folder / "objects.bin").open("wb") as f:  # one pass over the trace, appended as it goes
            for chunk in access_chunks(trace):
                f.write(chunk.astype(np.int32).tobytes())
                total += len(chunk)
        self.first_use = np.full(trace.meta.num_layers * trace.meta.num_experts, NEVER, np.int64)
        self._path = folder / "next.bin"
        with (folder / "objects.bin").open("rb") as src, self._path.open("wb") as dst:
            dst.truncate(total * 8)
            for hi in range(total, 0, -CHUNK):
                lo = max(0, hi - CHUNK)
                src.seek(lo * 4)
                objects = np.fromfile(src, np.int32, hi - lo)
                following = np.empty(hi - lo, np.int64)
                _next_uses(objects, following, self.first_use, lo)
                dst.seek(lo * 8)
                following.tofile(dst)
        (folder / "objects.bin").unlink()
        self._file = self._path.open("rb")

    def read(self, start: int, count: int) -> np.ndarray:
        """Next uses of accesses start .. start + count."""
        self._file.seek(start * 8)
        return np.fromfile(self._file, np.int64, count)

    def close(self) -> None:
        self._file.close()
        self._dir.cleanup()
