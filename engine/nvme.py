"""The NVMe tier: experts read from the checkpoint by byte ranges into slot buffers, by a thread pool.

Files are opened with O_DIRECT where the filesystem allows it, so a read is a disk read, not a
page-cache hit; elsewhere each range is dropped from the page cache (posix_fadvise DONTNEED) after
it is read, for the same effect on the next read. O_DIRECT needs 4 KiB-aligned offsets, lengths and
addresses: a packed block is read straight into its slot; an unaligned range (the model's own
layout) goes through the calling thread's aligned scratch buffer. An expert's ranges are split into
chunks of CHUNK bytes spread over the pool, so one demand miss uses every reader thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from engine.layout import ALIGN, ExpertLayout
from traces.errors import MoecacheError

CHUNK = 2 << 20


def open_uncached(path, direct: bool = True) -> tuple[int, bool]:
    """(fd, whether O_DIRECT is on) for reading `path` from the disk rather than the page cache; O_DIRECT
    where the platform and filesystem allow it (not on macOS, tmpfs or some overlays)."""
    flag = getattr(os, "O_DIRECT", 0)
    if direct and flag:
        try:
            return os.open(path, os.O_RDONLY | flag), True
        except OSError:
            pass
    try:
        return os.open(path, os.O_RDONLY), False
    except FileNotFoundError:
        raise MoecacheError(f"{path}: no such file") from None


def drop_cached(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Drop a range (all of the file by default) from the page cache, where the platform can."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_DONTNEED)


def aligned_empty(nbytes: int) -> np.ndarray:
    """A uint8 buffer whose address is a multiple of ALIGN."""
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


class NvmeReader:
    """Reads experts of `layout` into caller-given buffers; `read` returns a Future done when all bytes are in."""

    def __init__(self, layout: ExpertLayout, threads: int = 8, direct: bool = True) -> None:
        self.layout = layout
        opened = [open_uncached(path, direct) for path in layout.files]
        self.fds = [fd for fd, _ in opened]
        self.direct_fds = {fd for fd, is_direct in opened if is_direct}
        self.direct = len(self.direct_fds) == len(self.fds)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nvme")
        self.local = threading.local()
        self.bytes_read = 0
        self.busy_s = 0.0
        self.lock = threading.Lock()
        for fd in self.fds:  # start cold: nothing of the checkpoint in the page cache
            drop_cached(fd)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def read(self, obj: int, dest: np.ndarray, before: Callable[[], None] | None = None) -> Future:
        """Read expert `obj` into `dest` (a slot's bytes). `before()` runs once in a reader thread before the
        first byte is written; it waits until the device no longer reads the slot (never on this pool)."""
        chunks = []
        for piece in self.layout.pieces[obj]:
            for start in range(0, piece.nbytes, CHUNK):
                n = min(CHUNK, piece.nbytes - start)
                chunks.append((self.fds[piece.file], piece.offset + start, n, piece.slot_offset + start))
        done: Future = Future()
        remaining = [len(chunks)]
        gate = threading.Event()
        if before is None:
            gate.set()
        else:
            def open_gate() -> None:
                before()
                gate.set()
            self.pool.submit(open_gate)

        def work(fd: int, offset: int, n: int, at: int) -> None:
            try:
                gate.wait()
                self._read_range(fd, offset, n, dest[at:at + n])
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                if not done.done():
                    done.set_exception(exc)
                return
            with self.lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last and not done.done():
                done.set_result(None)

        for chunk in chunks:
            self.pool.submit(work, *chunk)
        return done

    def _read_range(self, fd: int, offset: int, n: int, out: np.ndarray) -> None:
        t0 = time.perf_counter()
        if fd not in self.direct_fds:
            _pread_all(fd, out, offset)
            drop_cached(fd, offset, n)
        elif offset % ALIGN == 0 and n % ALIGN == 0 and out.ctypes.data % ALIGN == 0:
            _pread_all(fd, out, offset)
        else:
            lo = offset - offset % ALIGN
            hi = -(-(offset + n) // ALIGN) * ALIGN
            scratch = self._scratch(hi - lo)
            got = _pread_all(fd, scratch[:hi - lo], lo, exact=False)
            if got < offset + n - lo:
                raise MoecacheError(f"checkpoint file truncated at byte {lo + got:,}")
            out[:] = scratch[offset - lo:offset - lo + n]
        with self.lock:
            self.bytes_read += n
            self.busy_s += time.perf_counter() - t0

    def _scratch(self, nbytes: int) -> np.ndarray:
        buf = getattr(self.local, "scratch", None)
        if buf is None or len(buf) < nbytes:
            buf = aligned_empty(max(nbytes, CHUNK + 2 * ALIGN))
            self.local.scratch = buf
        return buf


def _pread_all(fd: int, out: np.ndarray, offset: int, exact: bool = True) -> int:
    """Read into `out` from `offset` until full or end of file; returns bytes read."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    if exact and got < len(view):
        raise MoecacheError(f"checkpoint file truncated at byte {offset + got:,}")
    return got
