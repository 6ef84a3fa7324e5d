"""Streaming parts of a replay: Belady's next uses computed a chunk at a time, and the read-ahead thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from simulator import future as fu
from simulator.steps import iter_steps, read_ahead
from traces import reader
from traces.reader import open_trace


def plain_next_uses(objects: list[int]) -> list[int]:
    """Brute force: the index of each access's next use, NEVER if none."""
    return [next((b for b in range(a + 1, len(objects)) if objects[b] == obj), int(fu.NEVER))
            for a, obj in enumerate(objects)]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_next_uses_in_chunks_equal_brute_force(make_trace, monkeypatch, chunk):
    rng = np.random.default_rng(chunk)
    experts = rng.integers(0, 4, 90)
    path = make_trace([(i // 3, i % 3, [int(e)]) for i, e in enumerate(experts)], num_layers=3)
    monkeypatch.setattr(fu, "CHUNK", chunk)
    trace = open_trace(path)
    objects = fu.access_stream(trace).tolist()
    future = fu.Future(trace)
    try:
        assert future.read(0, len(objects)).tolist() == plain_next_uses(objects)
        assert future.read(10, 5).tolist() == plain_next_uses(objects)[10:15]
        first = [objects.index(o) if o in objects else int(fu.NEVER) for o in range(12)]
        assert future.first_use.tolist() == first
    finally:
        future.close()


def test_only_a_step_that_may_go_on_is_held_back_for_the_next_batch(make_trace, monkeypatch):
    monkeypatch.setattr(reader, "BATCH_ROWS", 2)
    decode = open_trace(make_trace([(t, 0, [t % 4]) for t in range(5)]))
    prefill = open_trace(make_trace([(t, 0, [t % 4]) for t in range(5)], phase="prefill"))
    assert [len(steps.rows) for steps in iter_steps(decode)] == [2, 2, 1]  # a decode row is a whole step
    assert [len(steps) for steps in iter_steps(prefill)] == [1]  # one step of five tokens, read in three batches
    assert next(iter_steps(prefill)).tokens.tolist() == [5]


def test_read_ahead_keeps_order_and_raises_where_the_producer_failed():
    def produce():
        yield from range(5)
        raise ValueError("row group 5 is damaged")

    seen = []
    with pytest.raises(ValueError, match="row group 5"):
        for item in read_ahead(produce()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_producer_when_the_consumer_stops():
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    items = read_ahead(produce())
    assert next(items) == 0
    items.close()
    deadline = time.monotonic() + 5
    while any(t.name == "moecache-read-ahead" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "moecache-read-ahead" for t in threading.enumerate())
    assert len(produced) <= 3  # one handed over, one waiting in the slot, one being offered


@pytest.mark.parametrize("name", ["lookahead", "affinity", "transitions"])
@pytest.mark.parametrize(("experts", "limit"), [(5, 1), (5, 2), (5, 3), (5, 8), (8, 3), (16, 8), (20, 3),
                                                      (20, 8), (20, 25)])
def test_fast_prefetch_plans_equal_the_reference(make_trace, name, experts, limit):
    """Including limits above the layer's experts, and powers of two (the fast top-k packs an expert's id
    into its key's low bits); counts stay small, so scores tie often."""
    from simulator.prefetchers import make_prefetcher, plan
    from simulator.steps import iter_steps

    rng = np.random.default_rng(limit + experts)
    rows = []
    for token in range(40):
        request_layers = 3
        for layer in range(request_layers):
            rows.append((token, layer, [int(e) for e in rng.choice(experts, 2, replace=False)],
                         [int(e) for e in rng.integers(-1, experts, 2)]))
    path = make_trace(rows, num_layers=3, num_experts=experts, top_k=2, lookahead=True)
    reference, fast = (make_prefetcher(name, 3, experts, limit) for _ in range(2))
    chunks = 0
    for steps in iter_steps(open_trace(path), lookahead=True):  # row groups of 7 rows: state crosses chunks
        want, got = plan(reference, steps), plan(fast, steps, fast=True)
        assert got[0].tolist() == want[0].tolist()
        assert got[1].tolist() == want[1].tolist()
        chunks += 1
    assert chunks > 5
