"""Trace format v1: the Parquet columns and the file-level metadata, with their validation.

One row per (request, token, MoE layer). Rows are stored in execution order: a prefill pass writes
layer by layer, each layer's prompt tokens together (one simulator *step*); a decode token writes
its layers in order (one step per row). A log of batched forward calls (a serving engine runs many
requests' tokens in one call) adds the optional `step` column: the rows of one call at one layer
form one step, whichever requests they belong to. The metadata says which model produced the routing, so a
simulator can size experts and refuse a trace that does not match its configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from traces.errors import MoecacheError

SCHEMA_VERSION = 1
META_PREFIX = "moecache."
PHASES = ("prefill", "decode")
PREFILL, DECODE = 0, 1

PHASE_TYPE = pa.dictionary(pa.int8(), pa.string())
REQUIRED_COLUMNS: dict[str, pa.DataType] = {
    "request": pa.int32(),
    "token": pa.int32(),
    "phase": PHASE_TYPE,
    "layer": pa.int16(),
    "experts": pa.list_(pa.int16()),
    "weights": pa.list_(pa.float32()),
}
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {
    "logits": pa.list_(pa.float16()),
    "lookahead": pa.list_(pa.int16()),
    "step": pa.int64(),
}


@dataclass(frozen=True)
class TraceMeta:
    """What a trace says about the model that produced it (Parquet key-value metadata)."""

    model: str
    architecture: str
    num_layers: int
    num_experts: int
    top_k: int
    bytes_per_expert: tuple[int, ...]
    dtype: str = "bfloat16"
    shared_experts: int = 0
    moe_layer_ids: tuple[int, ...] = ()
    tool_version: str = ""
    command: str = ""
    source: str = ""
    complete: bool = True
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def expert_bytes(self, layer: int) -> int:
        """Bytes of one routed expert of `layer` (the same for every layer unless listed per layer)."""
        if len(self.bytes_per_expert) == 1:
            return self.bytes_per_expert[0]
        return self.bytes_per_expert[layer]

    def validate(self, where: str) -> TraceMeta:
        """Raise a MoecacheError naming `where` and the field if the metadata is not usable."""
        if self.schema_version > SCHEMA_VERSION:
            raise MoecacheError(
                f"{where}: trace format v{self.schema_version} is newer than this moecache "
                f"understands (v{SCHEMA_VERSION}); upgrade moecache"
            )
        for name in ("num_layers", "num_experts", "top_k"):
            if getattr(self, name) < 1:
                raise MoecacheError(f"{where}: metadata {name}={getattr(self, name)} must be at least 1")
        if self.top_k > self.num_experts:
            raise MoecacheError(
                f"{where}: metadata top_k={self.top_k} is larger than num_experts={self.num_experts}"
            )
        if len(self.bytes_per_expert) not in (1, self.num_layers):
            raise MoecacheError(
                f"{where}: metadata bytes_per_expert has {len(self.bytes_per_expert)} values; "
                f"give one, or one per layer ({self.num_layers})"
            )
        if min(self.bytes_per_expert) < 1:
            raise MoecacheError(f"{where}: metadata bytes_per_expert must be positive")
        if self.moe_layer_ids and len(self.moe_layer_ids) != self.num_layers:
            raise MoecacheError(
                f"{where}: metadata moe_layer_ids lists {len(self.moe_layer_ids)} layers, "
                f"num_layers is {self.num_layers}"
            )
        return self

    def to_parquet(self) -> dict[bytes, bytes]:
        """Key-value pairs, each value a JSON text, under the `moecache.` prefix."""
        fields = asdict(self)
        extra = fields.pop("extra")
        fields.pop("complete")  # written by the writer when it closes the file
        pairs = {f"{META_PREFIX}{k}": json.dumps(v) for k, v in fields.items()}
        pairs.update({f"{META_PREFIX}extra.{k}": json.dumps(v) for k, v in extra.items()})
        return {k.encode(): v.encode() for k, v in pairs.items()}

    @classmethod
    def from_parquet(cls, kv: dict[bytes, bytes] | None, where: str) -> TraceMeta:
        values: dict[str, object] = {}
        extra: dict[str, str] = {}
        for raw_key, raw_value in (kv or {}).items():
            key = raw_key.decode(errors="replace")
            if not key.startswith(META_PREFIX):
                continue
            try:
                value = json.loads(raw_value)
            except json.JSONDecodeError:
                raise MoecacheError(f"{where}: metadata {key} is not valid JSON") from None
            name = key[len(META_PREFIX):]
            if name.startswith("extra."):
                extra[name[len("extra."):]] = value
            else:
                values[name] = value
        if not values:
            raise MoecacheError(
                f"{where}: not a moecache trace (no moecache metadata); "
                "convert foreign logs with `moecache traces import`"
            )
        missing = [n for n in ("model", "architecture", "num_layers", "num_experts", "top_k",
                               "bytes_per_expert") if n not in values]
        if missing:
            raise MoecacheError(f"{where}: metadata lacks {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        try:
            kwargs = {k: v for k, v in values.items() if k in known}
            kwargs["bytes_per_expert"] = tuple(int(b) for b in _as_list(values["bytes_per_expert"]))
            kwargs["moe_layer_ids"] = tuple(int(b) for b in _as_list(values.get("moe_layer_ids", [])))
            for name in ("num_layers", "num_experts", "top_k", "shared_experts", "schema_version"):
                if name in kwargs:
                    kwargs[name] = int(kwargs[name])  # type: ignore[arg-type]
            meta = cls(**kwargs, extra=extra)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise MoecacheError(f"{where}: metadata has a value of the wrong type ({exc})") from None
        return meta.validate(where)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, list) else [value]


def arrow_schema(meta: TraceMeta, logits: bool, lookahead: bool, step: bool = False) -> pa.Schema:
    fields = [pa.field(name, dtype) for name, dtype in REQUIRED_COLUMNS.items()]
    for name, wanted in (("logits", logits), ("lookahead", lookahead), ("step", step)):
        if wanted:
            fields.append(pa.field(name, OPTIONAL_COLUMNS[name]))
    return pa.schema(fields, metadata=meta.to_parquet())


def check_columns(schema: pa.Schema, path: Path) -> None:
    """Raise if a required column is missing or any known column has an unusable type."""
    for name, expected in {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}.items():
        index = schema.get_field_index(name)
        if index < 0:
            if name in REQUIRED_COLUMNS:
                raise MoecacheError(f"{path}: column '{name}' is missing (trace format v{SCHEMA_VERSION})")
            continue
        actual = schema.field(index).type
        if not _compatible(actual, expected):
            raise MoecacheError(f"{path}: column '{name}' has type {actual}, expected {expected}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_dictionary(expected):
        return pa.types.is_dictionary(actual) and (
            pa.types.is_string(actual.value_type) or pa.types.is_large_string(actual.value_type)
        )
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and (
            actual.value_type == expected.value_type
        )
    return actual == expected
