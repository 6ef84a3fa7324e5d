"""Trace rows to simulator *steps*: the unit at which the cache model advances.

A decode row is one step. Consecutive prefill rows of the same request and layer are one step whose
expert set is the union of their tokens' choices, in order of first appearance (DESIGN.md section 3).
In a trace with a `step` column (batched forward calls), consecutive rows of the same call and layer
are one step, whichever requests they belong to; it is a decode step when all its rows are decode.
An expert of layer l is the cache object `l * E + e`. `iter_steps` streams a trace a batch of rows at a
time and holds back the rows of a step that continues into the next batch, so steps never split.

Legend: S steps, A accesses (objects over all steps), N rows, K top-k, E experts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from simulator.jit import njit
from traces.reader import Trace, TraceArrays
from traces.schema import DECODE

T = TypeVar("T")


@dataclass
class Steps:
    """A run of whole steps and the rows they came from."""

    layer: np.ndarray  # (S,) int16
    request: np.ndarray  # (S,) int32
    decode: np.ndarray  # (S,) bool
    tokens: np.ndarray  # (S,) int32: rows (tokens) in the step
    new_token: np.ndarray  # (S,) int32: tokens that start here (a decode token's first step, a prefill step of
    # the first layer seen, a batched call's first layer: its rows), else 0
    ptr: np.ndarray  # (S+1,) int64: step s needs objects[ptr[s]:ptr[s+1]]
    objects: np.ndarray  # (A,) int32: layer * E + expert, unique within a step, router order
    row_ptr: np.ndarray  # (S+1,) int64: step s came from rows[row_ptr[s]:row_ptr[s+1]]
    rows: TraceArrays

    def __len__(self) -> int:
        return len(self.layer)

    @property
    def accesses(self) -> int:
        return int(self.ptr[-1])


def step_bounds(rows: TraceArrays) -> np.ndarray:
    """Row index where each step starts, plus N at the end."""
    n = len(rows)
    if n == 0:
        return np.zeros(1, np.int64)
    new = np.ones(n, bool)
    if rows.step is not None:
        new[1:] = (rows.step[1:] != rows.step[:-1]) | (rows.layer[1:] != rows.layer[:-1])
    else:
        new[1:] = ((rows.phase[1:] == DECODE) | (rows.phase[:-1] == DECODE)
                   | (rows.request[1:] != rows.request[:-1]) | (rows.layer[1:] != rows.layer[:-1]))
    return np.append(np.flatnonzero(new), n).astype(np.int64)


@njit(cache=True, nogil=True)
def _union(experts: np.ndarray, layer: np.ndarray, bounds: np.ndarray, num_experts: int,
           num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the distinct objects of its rows in order of first appearance."""
    mark = np.full(num_objects, -1, np.int64)
    steps = len(bounds) - 1
    out = np.empty(experts.shape[0] * experts.shape[1], np.int32)
    ptr = np.zeros(steps + 1, np.int64)
    count = 0
    for s in range(steps):
        for r in range(bounds[s], bounds[s + 1]):
            base = layer[r] * num_experts
            for j in range(experts.shape[1]):
                obj = base + experts[r, j]
                if mark[obj] != s:
                    mark[obj] = s
                    out[count] = obj
                    count += 1
        ptr[s + 1] = count
    return out[:count].copy(), ptr


def build_steps(rows: TraceArrays, num_layers: int, num_experts: int, first_layer: int = 0,
                previous: TraceArrays | None = None) -> Steps:
    """Steps of `rows`, which must hold whole steps; `previous` is the row just before them (the last of
    the previous chunk), so that a token or call cut by a chunk boundary is not counted twice."""
    bounds = step_bounds(rows)
    objects, ptr = _union(rows.experts, rows.layer, bounds, num_experts, num_layers * num_experts)
    starts = bounds[:-1]
    tokens = np.diff(bounds).astype(np.int32)
    layer = rows.layer[starts]
    if rows.step is not None:
        decode = np.minimum.reduceat(rows.phase, starts) == DECODE if len(starts) else np.zeros(0, bool)
        before = np.append(previous.step[-1:] if previous is not None else [-1], rows.step[starts[:-1]])
        first_layer_of_call = rows.step[starts] != before
        new_token = np.where(first_layer_of_call, tokens, 0).astype(np.int32)
    else:
        decode = rows.phase[starts] == DECODE
        new_token = np.where(decode, True, layer == first_layer)
        if len(starts):
            head = previous if previous is not None and len(previous) else None
            prev_request = np.append(head.request[-1:] if head else [-1], rows.request[starts[:-1]])
            prev_token = np.append(head.token[-1:] if head else [-1], rows.token[starts[:-1]])
            prev_decode = np.append(head.phase[-1:] == DECODE if head else [False], decode[:-1])
            new_token &= ~((rows.request[starts] == prev_request) & (rows.token[starts] == prev_token) & decode
                           & prev_decode)
        new_token = new_token.astype(np.int32)
    return Steps(layer=layer, request=rows.request[starts], decode=decode, tokens=tokens, new_token=new_token,
                 ptr=ptr, objects=objects, row_ptr=bounds, rows=rows)


def _split_last_step(rows: TraceArrays) -> tuple[TraceArrays, TraceArrays]:
    """(rows up to the last step, rows of the last step) so that a step cut by a batch is held back. Without a
    step column a decode row is a step of its own, so after one nothing is held back, and the next batch is not
    copied to join it (with router logits those copies took 0.07 s of the reading thread per 10M accesses)."""
    if rows.step is None and len(rows) and rows.phase[-1] == DECODE:
        return rows, _slice(rows, len(rows), len(rows))
    last = int(step_bounds(rows)[-2]) if len(rows) else 0
    return _slice(rows, 0, last), _slice(rows, last, len(rows))


def _slice(rows: TraceArrays, start: int, stop: int) -> TraceArrays:
    return TraceArrays(**{name: None if getattr(rows, name) is None else getattr(rows, name)[start:stop]
                          for name in TraceArrays.__dataclass_fields__})


def iter_steps(trace: Trace, logits: bool = False, lookahead: bool = False, weights: bool = False) -> Iterator[Steps]:
    """Steps of a trace, one batch of rows at a time (`Trace.iter_arrays`: constant memory); `weights` also
    reads the routing weights (the engine combines expert outputs with them)."""
    meta = trace.meta
    held: TraceArrays | None = None
    previous: TraceArrays | None = None
    for part in trace.iter_arrays(logits=logits, lookahead=lookahead, weights=weights):
        if held is not None and len(held):
            part = TraceArrays.concat([held, part])
        whole, held = _split_last_step(part)
        if len(whole):
            yield build_steps(whole, meta.num_layers, meta.num_experts, previous=previous)
            previous = _slice(whole, len(whole) - 1, len(whole))
    if held is not None and len(held):
        yield build_steps(held, meta.num_layers, meta.num_experts, previous=previous)


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, produced one ahead by a thread: the next batch of rows is read and cut into steps while the
    caller replays this one (the kernels release the GIL), which hides most of the reading on a second core.
    The producer's errors are raised here, in order; closing this generator stops the producer."""
    done = object()
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slot.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slot.put((done, None))
        except BaseException as error:  # handed to the consumer, which raises it
            slot.put((done, error))

    thread = threading.Thread(target=produce, name="moecache-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slot.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
