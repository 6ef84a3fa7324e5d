"""Write-then-rename, so an interrupted or failed command never leaves a half-written output."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from traces.errors import MoecacheError


def check_writable(dest: Path) -> None:
    """Fail early, before expensive work, when the output's folder is missing or not a folder."""
    parent = dest.resolve().parent
    if not parent.is_dir():
        raise MoecacheError(f"{dest}: folder {parent} does not exist; create it first")
    if dest.is_dir():
        raise MoecacheError(f"{dest}: is a folder; give a file name for the output")


def temporary_sibling(dest: Path) -> Path:
    """A fresh, hidden path in the destination's folder (same file system, so rename is atomic)."""
    check_writable(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.resolve().parent)
    os.close(fd)
    return Path(name)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def publish(tmp: Path, dest: Path) -> None:
    """Give the file the permissions a plain `open()` would (mkstemp makes it private), then rename."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)


@contextlib.contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; it becomes `dest` when the block ends, and is removed if the block
    fails, so a folder of outputs (a checkpoint) is never left half-written."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise MoecacheError(f"{dest}: folder exists and is not empty; choose a new folder")
    check_writable(dest)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
