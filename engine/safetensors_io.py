"""Safetensors files as byte ranges: headers parsed once, tensors never loaded whole, no pickle.

The NVMe tier reads an expert as a few (file, offset, length) ranges, so it needs every tensor's
absolute position and a check that the file really holds it (a truncated download names the file).
The streaming writer builds a file tensor by tensor from a header computed up front, so a
checkpoint of many gigabytes is written with the memory of one tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from traces.errors import MoecacheError

ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
               "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
CODES = {name: code for code, name in TORCH_NAMES.items()}
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorRange:
    """Where one tensor's bytes lie: absolute offset in `path`, length, dtype code and shape."""

    path: Path
    offset: int
    nbytes: int
    dtype: str  # safetensors code, e.g. BF16
    shape: tuple[int, ...]


def read_header(path: Path) -> dict[str, TensorRange]:
    """Every tensor of one safetensors file; one clear line if the file is not one or is truncated."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise MoecacheError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise MoecacheError(f"{path}: not a safetensors file, or truncated (header of {length:,} bytes "
                                    f"in a {size:,}-byte file)")
            header = json.loads(f.read(length))
    except FileNotFoundError:
        raise MoecacheError(f"{path}: no such safetensors file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MoecacheError(f"{path}: not a safetensors file (its header is not JSON)") from None
    base = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        if base + end > size:
            raise MoecacheError(f"{path}: truncated: tensor {name} ends at byte {base + end:,} but the file has "
                                f"{size:,}; download or write it again")
        tensors[name] = TensorRange(path, base + begin, end - begin, entry["dtype"], tuple(entry["shape"]))
    return tensors


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: those its index names, else every *.safetensors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MoecacheError(f"{folder}: no such checkpoint folder")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError):
            raise MoecacheError(f"{index}: not a safetensors index (no weight_map)") from None
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise MoecacheError(f"{folder}: no .safetensors weights (moecache never loads pickled .bin files)")
    return files


def checkpoint_tensors(folder: Path) -> dict[str, TensorRange]:
    """Every tensor of a checkpoint folder by name, across its shards."""
    tensors: dict[str, TensorRange] = {}
    for path in checkpoint_files(folder):
        tensors.update(read_header(path))
    return tensors


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to write: name, safetensors dtype code, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count * ITEM_BYTES[self.dtype]


def header_bytes(specs: Iterable[TensorSpec], metadata: dict[str, str] | None = None) -> bytes:
    """The length prefix and JSON header for tensors stored back to back in the order given."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for spec in specs:
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape),
                             "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_streaming(path: Path, specs: list[TensorSpec], produce: Callable[[TensorSpec], bytes | memoryview],
                    on_bytes: Callable[[int], None] | None = None) -> None:
    """Write a safetensors file tensor by tensor: `produce(spec)` returns each tensor's raw bytes."""
    with open(path, "wb") as f:
        f.write(header_bytes(specs))
        for spec in specs:
            data = memoryview(produce(spec)).cast("B")
            if len(data) != spec.nbytes:
                raise ValueError(f"{spec.name}: produced {len(data)} bytes, expected {spec.nbytes}")
            f.write(data)
            if on_bytes is not None:
                on_bytes(spec.nbytes)
