"""Import foreign routing logs into trace v1.

vLLM-style JSON Lines (the logs in `shared/traces/`, from the speculative-moe project): one object
per (token, layer) with `dataset`, `problem_id`, `layer`, `experts`, `gating_probs` and the
position as `token_idx` or `token_pos`. Such logs carry no model metadata, so a model spec supplies
it, and they have irregularities that this importer resolves by one documented rule and counts:

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

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from traces.errors import MoecacheError
from traces.model_specs import ModelSpec
from traces.schema import DECODE, PREFILL
from traces.version import VERSION
from traces.writer import TraceWriter

POSITION_FIELDS = ("token_idx", "token_pos")


@dataclass
class ImportSummary:
    source: str
    position_field: str
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


def _parse(path: Path, spec: ModelSpec) -> tuple[dict[tuple, list[_Row]], str, int]:
    """Rows grouped by request key, in file order; the position field's name; rows read."""
    requests: dict[tuple, list[_Row]] = {}
    position_field = ""
    count = 0
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MoecacheError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise MoecacheError(f"{where}: expected a JSON object per line")
            names = [f for f in POSITION_FIELDS if f in item]
            if len(names) != 1:
                raise MoecacheError(f"{where}: expected exactly one position field of {', '.join(POSITION_FIELDS)}")
            if position_field and names[0] != position_field:
                raise MoecacheError(f"{where}: mixes '{names[0]}' with '{position_field}' in one file")
            position_field = names[0]
            row = _row(item, position_field, spec, where)
            requests.setdefault((str(item.get("dataset", "")), item.get("problem_id", 0)), []).append(row)
            count += 1
    if not count:
        raise MoecacheError(f"{path}: no rows; expected one JSON object per (token, layer)")
    return requests, position_field, count


def _row(item: dict, position_field: str, spec: ModelSpec, where: str) -> _Row:
    for name in ("layer", "experts", "gating_probs", position_field):
        if name not in item:
            raise MoecacheError(f"{where}: field '{name}' is missing")
    layer, position, experts, weights = item["layer"], item[position_field], item["experts"], item["gating_probs"]
    if not isinstance(layer, int) or not 0 <= layer < spec.num_layers:
        raise MoecacheError(f"{where}: layer {layer!r} outside 0..{spec.num_layers - 1} of model spec {spec.name}")
    if not isinstance(position, int) or position < 0:
        raise MoecacheError(f"{where}: {position_field} {position!r} must be a non-negative integer")
    if not isinstance(experts, list) or len(experts) != spec.top_k or not all(
        isinstance(e, int) and 0 <= e < spec.num_experts for e in experts
    ):
        raise MoecacheError(
            f"{where}: experts {experts!r} must be {spec.top_k} ids in 0..{spec.num_experts - 1} (model spec {spec.name})"
        )
    if not isinstance(weights, list) or len(weights) != spec.top_k:
        raise MoecacheError(f"{where}: gating_probs must hold {spec.top_k} numbers")
    return _Row(layer, position, experts, [float(w) for w in weights])


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


def import_vllm_jsonl(source: Path, spec: ModelSpec, out: Path, command: str = "") -> ImportSummary:
    """Convert a vLLM-style routing log to a trace at `out`, by the rules in this module's docstring."""
    if not source.exists():
        raise MoecacheError(f"{source}: no such file")
    requests, position_field, rows_read = _parse(source, spec)
    summary = ImportSummary(source=str(source), position_field=position_field, rows_read=rows_read,
                            requests=len(requests))
    meta = spec.trace_meta(tool_version=VERSION, command=command, source=f"vllm-jsonl:{source.name}")
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
