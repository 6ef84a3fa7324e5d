"""Fuzzing every trace-reading command with mutated traces: values in every column, metadata, truncation,
row-group boundaries and column types. Whatever the file holds, a command exits 0 or 2, with one line on
error: never a traceback, never a crash (the numba kernels do not check bounds; validation guards them).

CI runs a bounded number of examples; for a longer run: MOECACHE_FUZZ_EXAMPLES=2000 make test
(or pytest tests/test_fuzz.py with that variable set)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moecache_cli.app import main
from traces.schema import TraceMeta
from traces.writer import TraceWriter

EXAMPLES = int(os.environ.get("MOECACHE_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 30,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COLUMNS = ("request", "token", "phase", "layer", "experts", "weights", "logits", "lookahead")
META_KEYS = ("num_layers", "num_experts", "top_k", "bytes_per_expert", "dtype", "schema_version", "model",
             "moe_layer_ids", "shared_experts")


@pytest.fixture(scope="module")
def base_trace(tmp_path_factory):
    """3 layers, 6 experts, top-2, with logits and lookahead: a prefill of 4 tokens, then 5 decode tokens."""
    path = tmp_path_factory.mktemp("fuzz") / "base.parquet"
    meta = TraceMeta(model="fuzz", architecture="mixtral", num_layers=3, num_experts=6, top_k=2,
                     bytes_per_expert=(1000,))
    rng = np.random.default_rng(0)
    with TraceWriter(path, meta, logits=True, lookahead=True, row_group_rows=10) as writer:
        def block(n):
            experts = np.array([rng.permutation(6)[:2] for _ in range(n)])
            weights = np.full((n, 2), 0.5, np.float32)
            return experts, weights, rng.normal(size=(n, 6)).astype(np.float32), \
                np.array([rng.permutation(6)[:2] for _ in range(n)])
        for layer in range(3):
            e, w, logits, ahead = block(4)
            writer.append(0, np.arange(4), "prefill", layer, e, w, logits=logits, lookahead=ahead)
        for token in range(4, 9):
            for layer in range(3):
                e, w, logits, ahead = block(1)
                writer.append(0, np.array([token]), "decode", layer, e, w, logits=logits, lookahead=ahead)
    return path


values = st.one_of(st.none(), st.integers(-70000, 70000), st.sampled_from([float("nan"), float("inf"), -1.5, 2.5]),
                   st.lists(st.integers(-3, 9), max_size=4), st.lists(st.integers(-3, 60), min_size=2, max_size=2),
                   st.lists(st.floats(allow_nan=True), max_size=7),
                   st.text(max_size=8))
cell = st.tuples(st.just("cell"), st.sampled_from(COLUMNS), st.integers(0, 26), values)
metadata = st.tuples(st.just("meta"), st.sampled_from(META_KEYS),
                     st.one_of(st.none(), st.integers(-3, 400).map(json.dumps), st.just("[1, 2"),
                               st.lists(st.integers(-1, 9), max_size=4).map(json.dumps), st.text(max_size=5)),
                     st.none())
retype = st.tuples(st.just("type"), st.sampled_from(COLUMNS),
                   st.sampled_from([pa.int32(), pa.int64(), pa.float64(), pa.string(), pa.list_(pa.int32()),
                                    pa.list_(pa.float64())]), st.none())
mutation = st.one_of(cell, metadata, retype)


def mutate(base, out, mutations, row_group_size, cut):
    table = pq.read_table(base)
    kv = dict(table.schema.metadata)
    for kind, name, value, extra in mutations:
        if kind == "meta":
            key = f"moecache.{name}".encode()
            if value is None:
                kv.pop(key, None)
            else:
                kv[key] = value.encode()
        elif kind == "cell":
            index = table.schema.get_field_index(name)
            column = table.column(name)
            cells = column.to_pylist()
            cells[value % len(cells) if isinstance(value, int) else 0] = extra
            target = pa.string() if name == "phase" else column.type
            try:
                array = pa.array(cells, target)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                try:
                    array = pa.array(cells)  # a value of another type changes the column's type
                except (pa.ArrowException, TypeError, ValueError, OverflowError):
                    continue
            if name == "phase" and pa.types.is_string(array.type):
                array = array.dictionary_encode()
            table = table.set_column(index, name, array)
        else:
            index = table.schema.get_field_index(name)
            try:
                table = table.set_column(index, name, table.column(name).cast(value))
            except (pa.ArrowException, TypeError, ValueError):
                continue
    pq.write_table(table.replace_schema_metadata(kv), out, row_group_size=row_group_size)
    if cut is not None:
        data = out.read_bytes()
        out.write_bytes(data[:cut % max(len(data), 1)])


def commands(path):
    yield ("traces", "info", path)
    yield ("traces", "stats", path, "--layers")
    for engine in ("fast", "reference"):
        for prefetch in ("none", "lookahead", "affinity", "transitions"):
            yield ("simulate", path, "-p", "lru", "-p", "watermark", "--vram-experts", "2", "--ram-experts", "3",
                   "--per-layer", "--engine", engine, "--prefetch", prefetch, "--quiet")
        yield ("simulate", path, "-p", "lfu", "--vram-experts", "3", "--global", "--ram", "0", "--engine", engine,
               "--routing-bonus", "0.5", "--quiet")
        yield ("simulate", path, "-p", "belady", "--vram-experts", "3", "--global", "--ram", "0", "--engine", engine,
               "--quiet")


@FUZZ
@given(mutations=st.lists(mutation, min_size=0, max_size=3), row_group_size=st.integers(1, 40),
       cut=st.one_of(st.none(), st.none(), st.integers(0, 1 << 16)))
def test_no_file_crashes_a_command(base_trace, tmp_path, capsys, mutations, row_group_size, cut):
    path = tmp_path / "mutated.parquet"
    mutate(base_trace, path, mutations, row_group_size, cut)
    for args in commands(path):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code in (0, 2), (args, code, err)
        if code == 2:
            assert err.startswith("moecache: error: ") and err.count("\n") == 1, (args, err)


def test_the_fuzzer_can_see_a_failure(base_trace, tmp_path, capsys, monkeypatch):
    """The harness itself: an unguarded error in a command is reported, not swallowed."""
    from traces import reader

    monkeypatch.setattr(reader, "_check_range", lambda *a: None)  # planted fault: no range validation
    path = tmp_path / "bad.parquet"
    mutate(base_trace, path, [("cell", "lookahead", 12, [40, 1])], 40, None)  # row 12: the first decode step
    with pytest.raises(IndexError):
        for args in commands(path):
            if "reference" in args and "lookahead" in args:
                main([str(a) for a in args])
