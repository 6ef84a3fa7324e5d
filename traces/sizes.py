"""Memory sizes as people write them (4GiB, 512MB, 1.5G, or bytes), for every option that takes one."""

from __future__ import annotations

import re

from traces.errors import MoecacheError

UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
         "T": 1000**4, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*")


def parse_size(text: str | None, option: str) -> int | None:
    """'4GiB', '512MB', '1.5G' or a byte count to bytes; None stays None."""
    if text is None:
        return None
    match = SIZE.fullmatch(text)
    if not match or match.group(2).upper() not in UNITS:
        raise MoecacheError(f"{option} {text!r}: expected a size such as 4GiB, 512MB or a number of bytes")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])
