"""The simulator: replay routing traces through expert-placement policies over VRAM, RAM and NVMe.

Policies (`simulator.policies`) only decide; the cache core (`simulator.cache`, and its numba twin
`simulator.kernel`) owns the loop and emits events; `simulator.accounting` turns events into the
metrics and predicted time of DESIGN.md sections 6 and 7. Never imports typer or rich.
"""

import hashlib
import os
import sys
from pathlib import Path


def _numba_cache_dir() -> Path:
    """numba's cache is checked against the source file of each compiled function only, but a kernel compiled
    for a policy holds code from several files (the policy's rules, the heap, the lists): a cache folder named
    after the contents of every simulator source keeps an edit anywhere from reusing stale machine code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "moecache" / f"numba-{digest.hexdigest()[:16]}"


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(_numba_cache_dir())
    if "numba" in sys.modules:  # already imported: its configuration has been read
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
