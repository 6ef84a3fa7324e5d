"""numba's `njit` for the simulator, with a cache folder that follows the simulator's sources.

numba checks its on-disk cache only against the file of each compiled function, but a kernel
compiled for a policy holds code from several files (the policy's rules, the heap, the lists): a
folder named after the contents of every simulator source keeps an edit anywhere from reusing
stale machine code. Set here, on first use of numba by the simulator, so that commands which never
compile anything do not pay for hashing the sources. A user's own NUMBA_CACHE_DIR is where that
folder goes (with it used as the folder itself, an edited policy reused the kernel compiled with the
old one); a value that already names the folder, as worker processes inherit it, is kept.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numba
from numba.core import event
from numba.core.errors import NumbaIRAssumptionWarning


def _cache_dir() -> Path:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    name = f"numba-{digest.hexdigest()[:16]}"
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and Path(given).name == name:
        return Path(given)
    base = Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moecache"
    return base / name


os.environ["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR = str(_cache_dir())

# numba's inliner checks its own IR pedantically and warns, asking for a bug report, when it inlines the
# hooks of a policy that asks for it (`simulator.kernel`); the agreement tests check those kernels' events
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)

njit = numba.njit


class FirstCompile(event.Listener):
    """Calls `said()` once, when numba first starts compiling in this process: it announces a compile, not a
    load from its disk cache, so a first run's silent tens of seconds can say why."""

    def __init__(self, said: Callable[[], None]) -> None:
        self.said: Callable[[], None] | None = said

    def on_start(self, _event: object) -> None:
        if self.said is not None:
            said, self.said = self.said, None
            said()

    def on_end(self, _event: object) -> None:
        pass


COMPILE_EVENT = "numba:compile"


@contextmanager
def on_first_compile(said: Callable[[], None] | None) -> Iterator[None]:
    """`said()` once if numba starts compiling within the block (nothing to listen for when None)."""
    if said is None:
        yield
        return
    with event.install_listener(COMPILE_EVENT, FirstCompile(said)):
        yield
