"""Where the files shipped in `data/` (installed as the `moecache_data` package) live."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_dir(*parts: str) -> Path:
    """Path of a folder or file under `data/`, for an editable or a regular install alike."""
    return Path(str(files("moecache_data").joinpath(*parts)))
