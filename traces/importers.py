"""Import foreign routing logs into trace v1: recognise the shape, then convert it.

Shapes (`import_log(..., fmt="auto")` tells them apart from the file's suffix and first line):
- `vllm-jsonl`: one object per (token, layer) with `dataset`, `problem_id`, `layer`, `experts`,
  `gating_probs` and the position as `token_idx` or `token_pos` (the logs in `shared/traces/`, from
  the speculative-moe project);
- `layer-idx-jsonl`: one object per (token, layer) with `layer_idx`, `token_idx`, `selected_ids`
  and `gate_weights`, one request;
- `route-jsonl`: a meta line, then one row per token of each batched forward call
  (`traces.import_batched`);
- `routed-experts`: `.npy`/`.npz` arrays of expert ids (tokens, layers, top_k) per request
  (`traces.import_arrays`).
Any other JSON Lines log of one object per (token, layer) imports with its fields mapped
(`--map experts=topk_ids --map request=req_id ...`). Logs carry no model metadata, so a model spec
supplies it. The per-(token, layer) shapes have irregularities that this module resolves by one
documented rule and counts:

1. Requests: each distinct (dataset, problem_id) is one request, numbered in order of appearance.
2. Prefill logged at position 0: when a request logs position 0 more than once at some layer, all
   of its position-0 rows are the prompt's prefill. At each layer the i-th position-0 row (file
   order) becomes prefill token i; with P the largest such count over the layers, the row logged at
   position p >= 1 becomes decode token P - 1 + p. A request that logs position 0 once per layer
   has no prefill rows: every row is a decode token at its logged position.
3. Duplicates: a second row for the same (request, layer, token) after rule 2 is dropped.
4. Missing rows: a (token, layer) pair absent from the log stays absent (nothing is invented);
   the summary counts them per request.
5. Order: rows are written in execution order, prefill layer by layer, then decode token by token.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from traces.errors import MoecacheError
from traces.jsonl import check_choice, json_objects
from traces.model_specs import ModelSpec
from traces.schema import DECODE, PREFILL
from traces.version import VERSION
from traces.writer import TraceWriter

POSITION_FIELDS = ("token_idx", "token_pos")
CANONICAL = ("request", "position", "layer", "experts", "weights")


@dataclass(frozen=True)
class RowFields:
    """Which fields of a per-(token, layer) row hold what: request (the fields whose values together name
    a request; none: one request), position (exactly one of these), layer, experts, weights."""

    request: tuple[str, ...] = ("dataset", "problem_id")
    position: tuple[str, ...] = POSITION_FIELDS
    layer: str = "layer"
    experts: str = "experts"
    weights: str = "gating_probs"

    def mapped(self, mapping: dict[str, str]) -> RowFields:
        """These fields with `--map` overrides (request may list several fields, comma-separated)."""
        values = {}
        for key, value in mapping.items():
            names = tuple(v.strip() for v in value.split(",") if v.strip())
            values[key] = names if key in ("request", "position") else value.strip()
        return dataclasses.replace(self, **values)


ROW_FORMATS = {
    "vllm-jsonl": RowFields(),
    "layer-idx-jsonl": RowFields(request=(), position=("token_idx",), layer="layer_idx", experts="selected_ids",
                                 weights="gate_weights"),
}
FORMATS = (*ROW_FORMATS, "route-jsonl", "routed-experts")


@dataclass
class ImportSummary:
    source: str
    position_field: str
    format: str = "vllm-jsonl"
    rows_read: int = 0
    rows_written: int = 0
    requests: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    position0_rows_as_prefill: int = 0
    duplicates_dropped: int = 0
    missing_token_layer_pairs: int = 0
    rows_per_layer_min: int = 0
    rows_per_layer_max: int = 0
    per_request: list[dict] = field(default_factory=list)


@dataclass
class _Row:
    layer: int
    position: int
    experts: list[int]
    weights: list[float]


def _parse(path: Path, spec: ModelSpec, fields: RowFields) -> tuple[dict[tuple, list[_Row]], str, int]:
    """Rows grouped by request key, in file order; the position field's name; rows read."""
    requests: dict[tuple, list[_Row]] = {}
    position_field = ""
    count = 0
    for where, item in json_objects(path):
        names = [f for f in fields.position if f in item]
        if len(names) != 1:
            raise MoecacheError(f"{where}: expected exactly one position field of {', '.join(fields.position)}")
        if position_field and names[0] != position_field:
            raise MoecacheError(f"{where}: mixes '{names[0]}' with '{position_field}' in one file")
        position_field = names[0]
        row = _row(item, position_field, fields, spec, where)
        key = tuple(str(item.get(name, "")) for name in fields.request)
        requests.setdefault(key, []).append(row)
        count += 1
    if not count:
        raise MoecacheError(f"{path}: no rows; expected one JSON object per (token, layer)")
    return requests, position_field, count


def _row(item: dict, position_field: str, fields: RowFields, spec: ModelSpec, where: str) -> _Row:
    for name in (fields.layer, fields.experts, fields.weights, position_field):
        if name not in item:
            raise MoecacheError(f"{where}: field '{name}' is missing")
    layer, position = item[fields.layer], item[position_field]
    experts, weights = item[fields.experts], item[fields.weights]
    if not isinstance(layer, int) or not 0 <= layer < spec.num_layers:
        raise MoecacheError(f"{where}: layer {layer!r} outside 0..{spec.num_layers - 1} of model spec {spec.name}")
    if not isinstance(position, int) or position < 0:
        raise MoecacheError(f"{where}: {position_field} {position!r} must be a non-negative integer")
    experts, weights = check_choice(experts, weights, spec, (fields.experts, fields.weights), where)
    return _Row(layer, position, experts, weights)


def _assign_tokens(rows: list[_Row]) -> tuple[list[tuple[int, int, _Row]], int, int]:
    """Rule 2: (phase, token, row) per row; the prefill length; position-0 rows made prefill."""
    zeros_per_layer: dict[int, int] = defaultdict(int)
    for row in rows:
        if row.position == 0:
            zeros_per_layer[row.layer] += 1
    prefill = max(zeros_per_layer.values(), default=0)
    prefill = prefill if prefill > 1 else 0
    seen_zero: dict[int, int] = defaultdict(int)
    assigned = []
    for row in rows:
        if prefill and row.position == 0:
            assigned.append((PREFILL, seen_zero[row.layer], row))
            seen_zero[row.layer] += 1
        else:
            assigned.append((DECODE, row.position + (prefill - 1 if prefill else 0), row))
    return assigned, prefill, sum(seen_zero.values())


def detect_format(source: Path) -> str:
    """The shape of a routing log from its suffix and first line; one line naming the fields otherwise."""
    if source.suffix in (".npy", ".npz"):
        return "routed-experts"
    try:
        with source.open() as handle:
            first = next((line for line in handle if line.strip()), "")
        item = json.loads(first) if first else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MoecacheError(f"{source}: not JSON Lines, .npy or .npz; cannot tell its format") from None
    if not isinstance(item, dict):
        raise MoecacheError(f"{source}: expected a JSON object per line (or a .npy/.npz file)")
    if item.get("type") == "meta":
        return "route-jsonl"
    for name, fields in ROW_FORMATS.items():
        needed = {fields.layer, fields.experts, fields.weights}
        if needed <= set(item) and any(p in item for p in fields.position):
            return name
    raise MoecacheError(f"{source}: unknown routing log; its first row has fields {', '.join(sorted(item))}. Map "
                        "them, e.g. --map experts=topk_ids --map weights=topk_weights --map layer=layer "
                        "--map position=token_idx --map request=req_id")


def import_log(source: Path, spec: ModelSpec, out: Path, fmt: str = "auto", mapping: dict[str, str] | None = None,
               prompt_tokens: int = 0, command: str = ""):
    """Convert a routing log of any known shape (or with mapped fields) to a trace at `out`; returns its summary."""
    from traces.import_arrays import import_routed_experts
    from traces.import_batched import import_route_jsonl

    if not source.exists():
        raise MoecacheError(f"{source}: no such file")
    if fmt not in ("auto", *FORMATS):
        raise MoecacheError(f"--format {fmt}: choose auto or one of {', '.join(FORMATS)}")
    mapping = mapping or {}
    unknown = sorted(set(mapping) - set(CANONICAL))
    if unknown:
        raise MoecacheError(f"--map {unknown[0]}=...: unknown field; map any of {', '.join(CANONICAL)}")
    if fmt == "auto":
        fmt = detect_format(source) if not mapping or source.suffix in (".npy", ".npz") else _mapped_format(source)
    if fmt == "routed-experts":
        return import_routed_experts(source, spec, out, prompt_tokens, command)
    if fmt == "route-jsonl":
        return import_route_jsonl(source, spec, out, mapping, command)
    return import_rows_jsonl(source, spec, out, ROW_FORMATS[fmt].mapped(mapping), fmt, command)


def _mapped_format(source: Path) -> str:
    """With --map given, a known shape keeps its rules; anything else is read as per-(token, layer) rows."""
    try:
        return detect_format(source)
    except MoecacheError:
        return "vllm-jsonl"


def import_vllm_jsonl(source: Path, spec: ModelSpec, out: Path, command: str = "") -> ImportSummary:
    """Convert a vLLM-style routing log to a trace at `out`, by the rules in this module's docstring."""
    return import_rows_jsonl(source, spec, out, ROW_FORMATS["vllm-jsonl"], "vllm-jsonl", command)


def import_rows_jsonl(source: Path, spec: ModelSpec, out: Path, fields: RowFields, fmt: str,
                      command: str = "") -> ImportSummary:
    """Convert a log of one object per (token, layer) to a trace at `out`, by the rules above."""
    if not source.exists():
        raise MoecacheError(f"{source}: no such file")
    requests, position_field, rows_read = _parse(source, spec, fields)
    summary = ImportSummary(source=str(source), position_field=position_field, rows_read=rows_read,
                            requests=len(requests), format=fmt)
    meta = spec.trace_meta(tool_version=VERSION, command=command, source=f"{fmt}:{source.name}")
    layer_rows = np.zeros(spec.num_layers, dtype=np.int64)
    with TraceWriter(out, meta) as writer:
        for request, rows in enumerate(requests.values()):
            assigned, prefill, as_prefill = _assign_tokens(rows)
            unique: dict[tuple[int, int], tuple[int, _Row]] = {}
            for phase, token, row in assigned:
                unique.setdefault((row.layer, token), (phase, row))
            dropped = len(assigned) - len(unique)
            tokens = {token for _, token in unique}
            missing = len(tokens) * spec.num_layers - len(unique)
            order = sorted(unique.items(), key=_execution_order)
            _write(writer, request, order)
            for (layer, _), _ in order:
                layer_rows[layer] += 1
            decode = len({t for (_, t), (ph, _) in unique.items() if ph == DECODE})
            summary.prefill_tokens += prefill
            summary.decode_tokens += decode
            summary.position0_rows_as_prefill += as_prefill
            summary.duplicates_dropped += dropped
            summary.missing_token_layer_pairs += missing
            summary.per_request.append({"request": request, "prefill_tokens": prefill, "decode_tokens": decode,
                                        "duplicates_dropped": dropped, "missing_token_layer_pairs": missing})
    summary.rows_written = writer.rows_written
    summary.rows_per_layer_min, summary.rows_per_layer_max = int(layer_rows.min()), int(layer_rows.max())
    return summary


def _execution_order(item: tuple[tuple[int, int], tuple[int, _Row]]) -> tuple[int, int, int]:
    """Rule 5: prefill layer by layer (a layer's prompt tokens together), then decode token by token."""
    (layer, token), (phase, _) = item
    return (phase, layer, token) if phase == PREFILL else (phase, token, layer)


def _write(writer: TraceWriter, request: int, order: list) -> None:
    n = len(order)
    writer.append_columns({
        "request": np.full(n, request, np.int32),
        "token": np.array([token for (_, token), _ in order], np.int32),
        "phase": np.array([phase for _, (phase, _) in order], np.int8),
        "layer": np.array([layer for (layer, _), _ in order], np.int16),
        "experts": np.array([row.experts for _, (_, row) in order], np.int16).reshape(n, -1),
        "weights": np.array([row.weights for _, (_, row) in order], np.float32).reshape(n, -1),
    })
