"""Routing logs of batched forward calls: a meta line, then one `route` row per (call token, layer).

The shape (from a vLLM routing logger): a first line
`{"type": "meta", "model_id": ..., "layers_logged": [0, 5], "top_k": 4}`, then rows
`{"type": "route", "req_id": "r1", "token_idx": 0, "layer": 0, "topk_ids": [...], "topk_weights": [...]}`.
A row is one token of one forward call: `token_idx` counts the call's tokens and restarts at 0 with
the next call, so at each layer a restart of `token_idx` begins a new call. The rules:

1. Calls: at each layer, the n-th run of increasing `token_idx` is call n; the trace's `step`
   column holds the call, and the simulator makes each (call, layer) one step whose experts are the
   union of its tokens' choices (DESIGN.md section 3).
2. Layers: only the layers in `layers_logged` are in the trace, renumbered 0.. in that order; the
   metadata's moe_layer_ids keep their model numbers.
3. Requests and positions: each distinct `req_id` is one request, numbered in order of appearance;
   a request's tokens take positions in call order. Its tokens in the first call it appears in are
   its prompt (prefill), later ones decode tokens.
   (A repeated `token_idx` at a layer therefore always opens a new call: nothing is a duplicate.)
4. Order: rows are written call by call, layer by layer within a call, tokens in call order.
"""

from __future__ import annotations

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

ROUTE_FIELDS = {"request": "req_id", "position": "token_idx", "layer": "layer", "experts": "topk_ids",
                "weights": "topk_weights"}


@dataclass
class BatchedSummary:
    source: str
    format: str = "route-jsonl"
    model_id: str = ""
    layers_logged: list[int] = field(default_factory=list)
    rows_read: int = 0
    rows_written: int = 0
    requests: int = 0
    calls: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0


def _meta_line(item: dict, spec: ModelSpec, where: str) -> tuple[list[int], str]:
    layers = item.get("layers_logged")
    if not isinstance(layers, list) or not layers or not all(isinstance(x, int) for x in layers):
        raise MoecacheError(f"{where}: the meta line needs layers_logged, a list of layer numbers")
    bad = [x for x in layers if not 0 <= x < spec.num_layers]
    if bad or len(set(layers)) != len(layers):
        raise MoecacheError(f"{where}: layers_logged {layers} must be distinct MoE layers in 0..{spec.num_layers - 1} "
                            f"(model spec {spec.name})")
    if "top_k" in item and item["top_k"] != spec.top_k:
        raise MoecacheError(f"{where}: the log's top_k {item['top_k']} differs from model spec {spec.name}'s "
                            f"{spec.top_k}; choose the matching -m")
    return layers, str(item.get("model_id", ""))


def import_route_jsonl(source: Path, spec: ModelSpec, out: Path, fields: dict[str, str] | None = None,
                       command: str = "") -> BatchedSummary:
    """Convert a meta-line-plus-route-rows log to a trace with a `step` column, by the rules above."""
    names = {**ROUTE_FIELDS, **(fields or {})}
    summary = BatchedSummary(source=str(source))
    layers: list[int] | None = None
    calls_at_layer: dict[int, int] = defaultdict(lambda: -1)
    last_index: dict[int, int] = {}
    rows: dict[tuple[int, int, int], tuple[str, list[int], list[float]]] = {}
    for where, item in json_objects(source):
        if item.get("type") == "meta":
            layers, summary.model_id = _meta_line(item, spec, where)
            continue
        if layers is None:
            raise MoecacheError(f"{where}: a route row before the meta line")
        if item.get("type", "route") != "route":
            continue
        request, index, layer, experts, weights = _route_row(item, names, layers, spec, where)
        if layer not in last_index or index <= last_index[layer]:
            calls_at_layer[layer] += 1
        last_index[layer] = index
        summary.rows_read += 1
        rows[(calls_at_layer[layer], layers.index(layer), index)] = (request, experts, weights)
    if layers is None or not rows:
        raise MoecacheError(f"{source}: no route rows (expected a meta line, then route rows)")
    summary.layers_logged = layers
    _write(rows, spec, layers, out, summary, command)
    return summary


def _route_row(item: dict, names: dict[str, str], layers: list[int], spec: ModelSpec, where: str):
    for canonical, name in names.items():
        if name not in item:
            raise MoecacheError(f"{where}: field '{name}' ({canonical}) is missing")
    layer, index = item[names["layer"]], item[names["position"]]
    experts, weights = item[names["experts"]], item[names["weights"]]
    if layer not in layers:
        raise MoecacheError(f"{where}: layer {layer!r} is not in layers_logged {layers}")
    if not isinstance(index, int) or index < 0:
        raise MoecacheError(f"{where}: {names['position']} {index!r} must be a non-negative integer")
    experts, weights = check_choice(experts, weights, spec, (names["experts"], names["weights"]), where)
    return str(item[names["request"]]), index, layer, experts, weights


def _write(rows: dict, spec: ModelSpec, layers: list[int], out: Path, summary: BatchedSummary,
           command: str) -> None:
    """Rules 3 and 4: number requests, give each call token its position and phase, write in order."""
    call_tokens: dict[int, dict[int, str]] = defaultdict(dict)  # call -> token_idx -> request
    for (call, _, index), (request, _, _) in rows.items():
        call_tokens[call].setdefault(index, request)
    requests: dict[str, int] = {}
    first_call: dict[str, int] = {}
    next_position: dict[str, int] = defaultdict(int)
    placed: dict[tuple[int, int], tuple[int, int]] = {}  # (call, token_idx) -> (position, phase)
    for call in sorted(call_tokens):
        for index in sorted(call_tokens[call]):
            request = call_tokens[call][index]
            requests.setdefault(request, len(requests))
            phase = PREFILL if first_call.setdefault(request, call) == call else DECODE
            placed[(call, index)] = (next_position[request], phase)
            next_position[request] += 1
            summary.prefill_tokens += phase == PREFILL
            summary.decode_tokens += phase == DECODE
    ordered = sorted(rows.items())
    n = len(ordered)
    columns = {"request": np.empty(n, np.int32), "token": np.empty(n, np.int32), "phase": np.empty(n, np.int8),
               "layer": np.empty(n, np.int16), "experts": np.empty((n, spec.top_k), np.int16),
               "weights": np.empty((n, spec.top_k), np.float32), "step": np.empty(n, np.int64)}
    for i, ((call, trace_layer, index), (request, experts, weights)) in enumerate(ordered):
        position, phase = placed[(call, index)]
        owner = call_tokens[call][index]
        columns["request"][i] = requests[owner]
        columns["token"][i], columns["phase"][i] = position, phase
        columns["layer"][i], columns["step"][i] = trace_layer, call
        columns["experts"][i], columns["weights"][i] = experts, weights
    meta = spec.trace_meta(num_layers=len(layers), tool_version=VERSION, command=command,
                           source=f"route-jsonl:{summary.model_id or Path(summary.source).name}",
                           moe_layer_ids=tuple(spec.dense_layers_first + layer for layer in layers))
    with TraceWriter(out, meta, step=True) as writer:
        writer.append_columns(columns)
    summary.rows_written = writer.rows_written
    summary.requests, summary.calls = len(requests), len(call_tokens)
