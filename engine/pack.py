"""`moecache pack`: rewrite a checkpoint's experts as one contiguous 4 KiB-aligned block each.

The model's own layout spreads an expert over three tensors (or slices of fused ones), so the
NVMe tier needs three reads per expert; a packed expert is one O_DIRECT read straight into a cache
slot. The output folder holds `experts.bin` (blocks in (layer, expert) order), `experts.json` (its
index), every non-expert tensor in `model.safetensors`, and the checkpoint's other files as they
were. It is written beside the destination and renamed at the end, so a failure leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.layout import EXPERT_RE, PACKED_DATA, PACKED_INDEX, ExpertLayout, open_layout, packed_index
from engine.like_checkpoint import check_free_space
from engine.safetensors_io import TensorSpec, checkpoint_files, checkpoint_tensors, write_streaming
from traces.atomic import atomic_folder
from traces.errors import MoecacheError


def read_expert(layout: ExpertLayout, obj: int, handles: list, out: np.ndarray) -> None:
    """Fill `out` (one slot of bytes) with expert `obj` by plain reads of its pieces."""
    for piece in layout.pieces[obj]:
        f = handles[piece.file]
        f.seek(piece.offset)
        view = memoryview(out[piece.slot_offset:piece.slot_offset + piece.nbytes])
        if f.readinto(view) != piece.nbytes:
            raise MoecacheError(f"{layout.files[piece.file]}: truncated at byte {piece.offset:,}")


def _write_blocks(layout: ExpertLayout, path: Path, progress: Callable[[int, int], None] | None) -> None:
    """Every expert's slot block, in object order, flushed to disk."""
    block = np.zeros(layout.format.slot_bytes, np.uint8)
    handles = [open(p, "rb") for p in layout.files]
    try:
        with open(path, "wb") as f:
            for obj in range(layout.num_objects):
                read_expert(layout, obj, handles, block)
                f.write(block.data)
                if progress is not None:
                    progress(obj + 1, layout.num_objects)
            f.flush()
            os.fsync(f.fileno())
    finally:
        for h in handles:
            h.close()


def pack_checkpoint(src: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> ExpertLayout:
    """Write the packed copy of `src` to `out_dir`; returns the source layout."""
    src, out_dir = Path(src), Path(out_dir)
    layout = open_layout(src)
    if layout.packed:
        raise MoecacheError(f"{src}: already packed")
    tensors = checkpoint_tensors(src)
    others = {name: rng for name, rng in tensors.items() if not EXPERT_RE.match(name)}
    slot = layout.format.slot_bytes
    check_free_space(out_dir, layout.num_objects * slot + sum(r.nbytes for r in others.values()))
    skip = {p.name for p in checkpoint_files(src)} | {"model.safetensors.index.json"}
    with atomic_folder(out_dir) as tmp:
        for item in src.iterdir():
            if item.is_file() and item.name not in skip:
                shutil.copy2(item, tmp / item.name)
        _write_blocks(layout, tmp / PACKED_DATA, progress)
        specs = [TensorSpec(name, rng.dtype, rng.shape) for name, rng in others.items()]

        def produce(spec: TensorSpec) -> bytes:
            rng = others[spec.name]
            with open(rng.path, "rb") as source:
                source.seek(rng.offset)
                return source.read(rng.nbytes)

        write_streaming(tmp / "model.safetensors", specs, produce)
        (tmp / PACKED_INDEX).write_text(json.dumps(packed_index(layout), indent=2))
    return layout
