"""The files shipped in `data/` (installed as the `moecache_data` package), and the one way to read
a TOML record from there (model specs, hardware presets) with errors that name the file and key."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from traces.errors import MoecacheError


def data_dir(*parts: str) -> Path:
    """Path of a folder or file under `data/`, for an editable or a regular install alike."""
    return Path(str(files("moecache_data").joinpath(*parts)))


def available(folder: str) -> list[str]:
    """Names of the shipped TOML records in `data/<folder>`."""
    return sorted(p.stem for p in data_dir(folder).glob("*.toml"))


def read_record(name_or_path: str | Path, folder: str, kind: str, cls: type) -> Any:
    """Build dataclass `cls` from a shipped record (`name`) or a `.toml` path; unknown keys, wrong types
    and non-whole numbers where an int is expected end in one clear line."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = data_dir(folder) / f"{name_or_path}.toml"
        if not path.exists():
            raise MoecacheError(f"unknown {kind} '{name_or_path}'; known: {', '.join(available(folder))} "
                                f"(or give the path of a .toml {kind})")
    elif not path.exists():
        raise MoecacheError(f"{path}: no such {kind} file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MoecacheError(f"{path}: not valid TOML ({exc})") from None
    known = cls.__dataclass_fields__
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise MoecacheError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    for name, value in raw.items():
        wanted = known[name].type
        if wanted == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise MoecacheError(f"{path}: {name} = {value!r} must be a whole number")
        if wanted == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
            raise MoecacheError(f"{path}: {name} = {value!r} must be a positive number")
    try:
        return path, cls(**raw)
    except TypeError as exc:
        raise MoecacheError(f"{path}: {exc}") from None
