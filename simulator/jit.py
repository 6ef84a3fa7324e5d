"""numba's `njit` for the simulator, with a cache folder that follows the simulator's sources.

numba checks its on-disk cache only against the file of each compiled function, but a kernel
compiled for a policy holds code from several files (the policy's rules, the heap, the lists): a
folder named after the contents of every simulator source keeps an edit anywhere from reusing
stale machine code. Set here, on first use of numba by the simulator, so that commands which never
compile anything do not pay for hashing the sources; a user's own NUMBA_CACHE_DIR wins.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numba
from numba.core.errors import NumbaIRAssumptionWarning


def _cache_dir() -> Path:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "moecache" / f"numba-{digest.hexdigest()[:16]}"


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR = str(_cache_dir())

# numba's inliner checks its own IR pedantically and warns, asking for a bug report, when it inlines the
# hooks of a policy that asks for it (`simulator.kernel`); the agreement tests check those kernels' events
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)

njit = numba.njit
