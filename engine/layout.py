"""Where each routed expert's bytes lie on disk, and how they sit in a cache slot.

A slot holds one expert as one contiguous block in the model dtype, the same block `moecache pack`
writes: standard SwiGLU experts as [gate (I,H) | up (I,H) | down (H,I)], so gate and up together
are transformers' `gate_up_proj[e]` (2I,H); GPT-OSS as [gate_up (H,2I) | gate_up_bias (2I) |
down (I,H) | down_bias (H)], interleaved gate/up columns as the checkpoint stores them. Parts start
on 256-byte boundaries and a slot is padded to 4 KiB, so a packed block is one O_DIRECT read.

Two on-disk layouts map onto that slot: the model's own safetensors (per-expert tensors, or
GPT-OSS's fused [E, ...] tensors, sliced at expert e) as a few byte ranges per expert, and the
packed layout as one range. Legend: L MoE layers, E experts, H hidden, I expert intermediate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.safetensors_io import CODES, ITEM_BYTES, TORCH_NAMES, TensorRange, checkpoint_tensors
from traces.errors import MoecacheError

ALIGN = 4096
PART_ALIGN = 256
PACKED_INDEX = "experts.json"
PACKED_DATA = "experts.bin"
PACKED_FORMAT = "moecache-packed-experts"
EXPERT_RE = re.compile(r"^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe)\.experts\.(\d+\.)?")
STANDARD_NAMES = {"mixtral": ("w1", "w3", "w2")}  # gate, up, down; every other standard arch: *_proj
GPT_OSS_PARTS = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias")


def round_up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Part:
    """One tensor of an expert inside its slot."""

    name: str
    offset: int  # bytes from the slot's start
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class Piece:
    """One byte range to read: file index, absolute file offset, length, destination offset in the slot."""

    file: int
    offset: int
    nbytes: int
    slot_offset: int


@dataclass(frozen=True)
class SlotFormat:
    """How one expert sits in a slot: its parts, its bytes (as a trace counts them) and the padded slot."""

    kind: str  # "swiglu" or "gpt_oss"
    dtype: str  # torch dtype name
    hidden: int
    intermediate: int
    parts: tuple[Part, ...]
    expert_bytes: int
    slot_bytes: int

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "dtype": self.dtype, "hidden": self.hidden, "intermediate": self.intermediate}


def slot_format(kind: str, dtype: str, hidden: int, intermediate: int) -> SlotFormat:
    item = ITEM_BYTES[CODES[dtype]]
    h, i = hidden, intermediate
    shapes = ((("gate_up", (2 * i, h)), ("down", (h, i))) if kind == "swiglu" else
              (("gate_up", (h, 2 * i)), ("gate_up_bias", (2 * i,)), ("down", (i, h)), ("down_bias", (h,))))
    parts, offset, total = [], 0, 0
    for name, shape in shapes:
        nbytes = item
        for d in shape:
            nbytes *= d
        parts.append(Part(name, offset, shape, nbytes))
        offset = round_up(offset + nbytes, PART_ALIGN)
        total += nbytes
    return SlotFormat(kind, dtype, h, i, tuple(parts), total, round_up(offset, ALIGN))


@dataclass(frozen=True)
class ExpertLayout:
    """Every (layer, expert) object's byte ranges, object = layer * E + expert (trace order)."""

    folder: Path
    architecture: str
    packed: bool
    format: SlotFormat
    files: tuple[Path, ...]
    num_layers: int
    num_experts: int
    decoder_layers: tuple[int, ...]
    pieces: tuple[tuple[Piece, ...], ...]
    activation: str = "silu"
    swiglu_limit: float = 7.0

    @property
    def num_objects(self) -> int:
        return self.num_layers * self.num_experts


def read_config(folder: Path) -> dict[str, object]:
    path = Path(folder) / "config.json"
    if not path.exists():
        raise MoecacheError(f"{folder}: no config.json; give a Hugging Face checkpoint folder or a `moecache pack` "
                            "output")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise MoecacheError(f"{path}: not valid JSON") from None


def open_layout(folder: Path) -> ExpertLayout:
    """The expert layout of a checkpoint folder: packed if `moecache pack` wrote it, else the model's own."""
    folder = Path(folder)
    config = read_config(folder)
    if (folder / PACKED_INDEX).exists():
        return _packed_layout(folder, config)
    return _model_layout(folder, config, checkpoint_tensors(folder))


def _common(config: dict[str, object]) -> tuple[str, str, float]:
    arch = str(config.get("model_type", ""))
    activation = str(config.get("hidden_act", "silu"))
    if arch != "gpt_oss" and activation != "silu":
        raise MoecacheError(f"experts with activation '{activation}' are not supported (only SwiGLU with silu)")
    return arch, activation, float(config.get("swiglu_limit", 7.0))


def _model_layout(folder: Path, config: dict[str, object], tensors: dict[str, TensorRange]) -> ExpertLayout:
    arch, activation, limit = _common(config)
    by_layer: dict[int, dict[str, TensorRange]] = {}
    for name, rng in tensors.items():
        match = EXPERT_RE.match(name)
        if match:
            by_layer.setdefault(int(match.group(1)), {})[name[match.end():] if not match.group(2)
                                                         else match.group(2) + name[match.end():]] = rng
    if not by_layer:
        raise MoecacheError(f"{folder}: no routed expert tensors found (expected names such as "
                            "model.layers.0.mlp.experts.0.gate_proj.weight)")
    decoder_layers = tuple(sorted(by_layer))
    files = tuple(sorted({r.path for layer in by_layer.values() for r in layer.values()}))
    file_index = {p: i for i, p in enumerate(files)}
    if arch == "gpt_oss":
        fmt, experts, pieces = _gpt_oss_pieces(folder, by_layer, decoder_layers, file_index)
    else:
        fmt, experts, pieces = _standard_pieces(folder, arch, by_layer, decoder_layers, file_index)
    return ExpertLayout(folder, arch, False, fmt, files, len(decoder_layers), experts, decoder_layers,
                        tuple(pieces), activation, limit)


def _dtype_of(folder: Path, rng: TensorRange) -> str:
    if rng.dtype.startswith("F8") or rng.dtype not in ("F32", "F16", "BF16"):
        raise MoecacheError(f"{folder}: expert tensors in {rng.dtype} are not supported (float32, float16 or "
                            "bfloat16 only; dequantize FP8/MXFP4 checkpoints first)")
    return TORCH_NAMES[rng.dtype]


def _standard_pieces(folder, arch, by_layer, decoder_layers, file_index):
    gate, up, down = STANDARD_NAMES.get(arch, ("gate_proj", "up_proj", "down_proj"))
    first = by_layer[decoder_layers[0]]
    experts = 1 + max(int(key.split(".")[0]) for key in first)
    sample = first.get(f"0.{gate}.weight")
    if sample is None:
        raise MoecacheError(f"{folder}: expert tensors of layer {decoder_layers[0]} are not named "
                            f"experts.N.{gate}.weight / {up} / {down}")
    inter, hidden = sample.shape
    fmt = slot_format("swiglu", _dtype_of(folder, sample), hidden, inter)
    half = fmt.part("gate_up").nbytes // 2
    targets = ((gate, 0, (inter, hidden)), (up, half, (inter, hidden)), (down, fmt.part("down").offset,
                                                                         (hidden, inter)))
    pieces = []
    for layer in decoder_layers:
        found = by_layer[layer]
        for e in range(experts):
            row = []
            for name, slot_offset, shape in targets:
                rng = found.get(f"{e}.{name}.weight")
                if rng is None:
                    raise MoecacheError(f"{folder}: the checkpoint lacks expert {e} of decoder layer {layer} "
                                        f"(tensor ...experts.{e}.{name}.weight)")
                if rng.shape != shape or TORCH_NAMES.get(rng.dtype) != fmt.dtype:
                    raise MoecacheError(f"{folder}: expert {e} of layer {layer}: {name} is {rng.dtype} {rng.shape}, "
                                        f"expected {fmt.dtype} {shape} like the others")
                row.append(Piece(file_index[rng.path], rng.offset, rng.nbytes, slot_offset))
            pieces.append(tuple(row))
    return fmt, experts, pieces


def _gpt_oss_pieces(folder, by_layer, decoder_layers, file_index):
    first = by_layer[decoder_layers[0]]
    if "gate_up_proj" not in first:
        raise MoecacheError(f"{folder}: GPT-OSS experts without a bf16/fp32 gate_up_proj tensor (MXFP4 blocks are "
                            "not supported; dequantize first)")
    experts, hidden, two_i = first["gate_up_proj"].shape
    fmt = slot_format("gpt_oss", _dtype_of(folder, first["gate_up_proj"]), hidden, two_i // 2)
    names = dict(zip(GPT_OSS_PARTS, ("gate_up", "gate_up_bias", "down", "down_bias")))
    pieces = []
    for layer in decoder_layers:
        found = by_layer[layer]
        for e in range(experts):
            row = []
            for tensor, part_name in names.items():
                rng, part = found.get(tensor), fmt.part(part_name)
                if rng is None or rng.shape != (experts, *part.shape):
                    raise MoecacheError(f"{folder}: decoder layer {layer} lacks mlp.experts.{tensor} of shape "
                                        f"{(experts, *part.shape)}")
                row.append(Piece(file_index[rng.path], rng.offset + e * part.nbytes, part.nbytes, part.offset))
            pieces.append(tuple(row))
    return fmt, experts, pieces


def packed_index(layout: ExpertLayout) -> dict[str, object]:
    """The index `moecache pack` writes beside its one data file."""
    return {"format": PACKED_FORMAT, "version": 1, "architecture": layout.architecture,
            "num_layers": layout.num_layers, "num_experts": layout.num_experts,
            "decoder_layers": list(layout.decoder_layers), "slot": layout.format.to_json(),
            "slot_bytes": layout.format.slot_bytes, "data": PACKED_DATA, "order": "layer-major: block of "
            "(layer, expert) at ((layer * num_experts) + expert) * slot_bytes"}


def _packed_layout(folder: Path, config: dict[str, object]) -> ExpertLayout:
    arch, activation, limit = _common(config)
    path = folder / PACKED_INDEX
    try:
        index = json.loads(path.read_text())
        assert index["format"] == PACKED_FORMAT
        slot = index["slot"]
        fmt = slot_format(slot["kind"], slot["dtype"], int(slot["hidden"]), int(slot["intermediate"]))
        layers, experts = int(index["num_layers"]), int(index["num_experts"])
        decoder_layers = tuple(int(x) for x in index["decoder_layers"])
    except (json.JSONDecodeError, KeyError, AssertionError, TypeError, ValueError):
        raise MoecacheError(f"{path}: not a moecache packed-expert index") from None
    data = folder / PACKED_DATA
    need = layers * experts * fmt.slot_bytes
    size = data.stat().st_size if data.exists() else -1
    if size < need:
        raise MoecacheError(f"{data}: truncated or missing: {max(size, 0):,} bytes, the index needs {need:,}; "
                            "run `moecache pack` again")
    pieces = tuple((Piece(0, obj * fmt.slot_bytes, fmt.slot_bytes, 0),) for obj in range(layers * experts))
    return ExpertLayout(folder, arch, True, fmt, (data,), layers, experts, decoder_layers, pieces, activation, limit)
