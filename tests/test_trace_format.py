"""Trace format v1: round trip, streaming row groups, metadata validation, clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from traces import reader
from traces.errors import MoecacheError
from traces.reader import open_trace
from traces.schema import TraceMeta
from traces.writer import TraceWriter

META = TraceMeta(model="m", architecture="mixtral", num_layers=2, num_experts=4, top_k=2, bytes_per_expert=(10, 20))


def write_small(path, rows_per_group=3, complete=True, **columns):
    writer = TraceWriter(path, META, row_group_rows=rows_per_group, **columns)
    for token in range(3):
        for layer in range(2):
            writer.append(
                0, np.array([token]), "decode", layer, np.array([[token % 4, (token + 1) % 4]]),
                np.array([[0.75, 0.25]]),
                logits=np.arange(4, dtype=np.float32)[None] if columns.get("logits") else None,
                lookahead=(np.array([[1, 2]]) if layer == 0 else np.array([[-1, -1]]))
                if columns.get("lookahead") else None,
            )
    writer.close(complete=complete)


def test_round_trip_keeps_rows_order_and_metadata(tmp_path):
    path = tmp_path / "t.parquet"
    write_small(path, logits=True, lookahead=True)
    trace = open_trace(path)
    assert trace.meta.bytes_per_expert == (10, 20) and trace.meta.expert_bytes(1) == 20
    assert trace.num_rows == 6 and trace.num_row_groups == 2 and trace.meta.complete
    arrays = trace.arrays(logits=True, lookahead=True)
    assert arrays.token.tolist() == [0, 0, 1, 1, 2, 2]
    assert arrays.layer.tolist() == [0, 1, 0, 1, 0, 1]
    assert arrays.experts[2].tolist() == [1, 2]
    assert arrays.weights[0].tolist() == [0.75, 0.25]
    assert arrays.logits.shape == (6, 4) and arrays.logits[0, 3] == 3
    assert arrays.lookahead[:, 0].tolist() == [1, -1, 1, -1, 1, -1]
    assert arrays.phase.tolist() == [1] * 6


def test_logits_are_split_by_byte_stream_and_other_columns_keep_dictionaries(tmp_path):
    path = tmp_path / "t.parquet"
    write_small(path, logits=True, lookahead=True)
    group = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings["logits.list.element"]
    assert "RLE_DICTIONARY" not in encodings["logits.list.element"]
    assert all("RLE_DICTIONARY" in found for name, found in encodings.items() if not name.startswith("logits"))


def test_row_groups_stream_and_concatenate(tmp_path):
    path = tmp_path / "t.parquet"
    write_small(path, rows_per_group=2)
    trace = open_trace(path)
    parts = list(trace.iter_arrays())
    assert [len(p) for p in parts] == [2, 2, 2]
    assert np.concatenate([p.token for p in parts]).tolist() == trace.arrays().token.tolist()


def test_a_row_group_larger_than_a_batch_arrives_in_batches(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    write_small(path, rows_per_group=3)
    whole = open_trace(path).arrays().token.tolist()
    monkeypatch.setattr(reader, "BATCH_ROWS", 2)
    parts = list(open_trace(path).iter_arrays())
    assert [len(p) for p in parts] == [2, 1, 2, 1]
    assert np.concatenate([p.token for p in parts]).tolist() == whole


def test_batches_with_router_logits_hold_a_bounded_number_of_bytes(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    write_small(path, rows_per_group=3, logits=True)
    monkeypatch.setattr(reader, "BATCH_LOGITS_BYTES", 16)  # two rows of 4 float16 logits
    trace = open_trace(path)
    parts = list(trace.iter_arrays(logits=True))
    assert [len(p) for p in parts] == [2, 1, 2, 1]
    assert np.concatenate([p.logits for p in parts]).tolist() == [[0.0, 1.0, 2.0, 3.0]] * 6
    assert [len(p) for p in trace.iter_arrays()] == [3, 3]


def test_incomplete_flag_and_lazy_frame(tmp_path):
    path = tmp_path / "t.parquet"
    write_small(path, complete=False)
    trace = open_trace(path)
    assert trace.meta.complete is False
    frame = trace.lazy().collect()
    assert frame["phase"].to_list() == ["decode"] * 6
    assert frame["experts"].to_list()[1] == [0, 1]


def test_abort_leaves_no_file(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError):
        with TraceWriter(path, META) as writer:
            writer.append(0, np.array([0]), "decode", 0, np.array([[0, 1]]), np.array([[0.5, 0.5]]))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_out_of_range_expert(tmp_path):
    with TraceWriter(tmp_path / "t.parquet", META) as writer, pytest.raises(MoecacheError, match="expert id"):
        writer.append(0, np.array([0]), "decode", 0, np.array([[0, 4]]), np.array([[0.5, 0.5]]))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("not parquet"), "not a readable Parquet file"),
        (lambda p: pq.write_table(pa.table({"a": [1]}), p), "not a moecache trace"),
    ],
)
def test_open_rejects_bad_files(tmp_path, make, message):
    path = tmp_path / "bad.parquet"
    make(path)
    with pytest.raises(MoecacheError, match=message):
        open_trace(path)


def _rewrite(src, dst, table=None, meta_update=None, row_group_size=None):
    original = pq.read_table(src)
    table = table if table is not None else original
    kv = dict(original.schema.metadata)
    kv.update({k.encode(): json.dumps(v).encode() for k, v in (meta_update or {}).items()})
    pq.write_table(table.replace_schema_metadata(kv), dst, row_group_size=row_group_size)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"moecache.top_k": 9}, "top_k=9 is larger than num_experts=4"),
        ({"moecache.bytes_per_expert": [1, 2, 3]}, "bytes_per_expert has 3 values"),
        ({"moecache.schema_version": 99}, "newer than this moecache"),
        ({"moecache.num_layers": "two"}, "wrong type"),
    ],
)
def test_open_rejects_wrong_metadata(tmp_path, update, message):
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_small(good)
    _rewrite(good, bad, meta_update=update)
    with pytest.raises(MoecacheError, match=message):
        open_trace(bad)


def test_open_rejects_wrong_column_type_and_bad_rows(tmp_path):
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_small(good)
    table = pq.read_table(good)
    _rewrite(good, bad, table=table.set_column(3, "layer", table.column("layer").cast(pa.float32())))
    with pytest.raises(MoecacheError, match="column 'layer' has type float"):
        open_trace(bad)
    _rewrite(good, bad, meta_update={"moecache.num_experts": 2, "moecache.top_k": 2})
    with pytest.raises(MoecacheError, match=r"row group 0\): column .experts. holds [23], outside 0..1"):
        open_trace(bad).arrays()


def test_trace_info_cli_reports_and_fails_cleanly(tmp_path, run_cli):
    path = tmp_path / "t.parquet"
    write_small(path, lookahead=True)
    code, out, _ = run_cli("traces", "info", path, "--json")
    info = json.loads(out)["traces"][0]
    assert code == 0 and info["rows"] == 6 and info["has_lookahead"] and not info["has_logits"]
    code, _, err = run_cli("traces", "info", tmp_path / "missing.parquet")
    assert code == 2 and err.strip().count("\n") == 0 and "no such file" in err


@pytest.mark.parametrize("column, value, message", [
    ("lookahead", [5, 0], r"column 'lookahead' holds 5, outside -1\.\.3"),
    ("lookahead", [-2, 0], r"column 'lookahead' holds -2"),
    ("experts", [-1, 0], r"column 'experts' holds -1, outside 0\.\.3"),
    ("weights", [float("nan"), 0.5], "NaN, infinite or negative"),
    ("weights", [-0.5, 0.5], "NaN, infinite or negative"),
    ("token", -3, r"column 'token' holds -3, outside 0 or more"),
    ("request", -1, r"column 'request' holds -1"),
    ("layer", 7, r"column 'layer' holds 7, outside 0\.\.1"),
    ("layer", None, "column 'layer' has null rows"),
    ("experts", [1], "lists of length 1, expected 2"),
    ("experts", None, "column 'experts' has null rows"),
])
def test_every_command_refuses_a_bad_row_naming_file_row_group_and_column(tmp_path, run_cli, column, value,
                                                                            message):
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    meta = TraceMeta(model="m", architecture="mixtral", num_layers=2, num_experts=4, top_k=2,
                     bytes_per_expert=(1000,))
    with TraceWriter(good, meta, lookahead=True, row_group_rows=4) as writer:
        for token in range(5):
            for layer in range(2):
                writer.append(0, np.array([token]), "decode", layer, np.array([[layer, 2]]),
                              np.array([[0.6, 0.4]], np.float32), lookahead=np.array([[1, 3]]))
    table = pq.read_table(good)
    values = table.column(column).to_pylist()
    values[6] = value  # row 6 sits in the second row group
    _rewrite(good, bad, table=table.set_column(table.schema.get_field_index(column), column,
                                               pa.array(values, table.schema.field(column).type)),
             row_group_size=4)
    commands = [("traces", "info"), ("traces", "stats")]
    if column != "weights":  # simulate checks every column it reads, and it has no use for the weights
        commands.append(("simulate", "--vram-experts", "2", "--prefetch", "lookahead", "-p", "lru", "--no-bound",
                         "--quiet"))
    for command in commands:
        code, _, err = run_cli(*command[:2], bad, *command[2:]) if command[0] == "traces" else \
            run_cli(command[0], bad, *command[1:])
        assert code == 2 and err.count("\n") == 1, (command, err)
        assert f"{bad} (row group 1): " in err and re.search(message, err), (command, err)


def test_list_columns_become_matrices_from_slices_and_nulls_fill_only_where_allowed():
    from traces.reader import _matrix

    lists = pa.array([[1, 2], [3, 4], None, [5, 6], [7, 8]], pa.list_(pa.int16()))
    column = pa.chunked_array([lists.slice(3), lists.slice(0, 2)])  # slices start inside their lists' values
    assert _matrix(column, 2, np.int16, "experts", "w").tolist() == [[5, 6], [7, 8], [1, 2], [3, 4]]
    filled = _matrix(pa.chunked_array([lists.slice(1, 3)]), 2, np.int16, "lookahead", "w", fill_nulls=-1)
    assert filled.tolist() == [[3, 4], [-1, -1], [5, 6]]
    with pytest.raises(MoecacheError, match="column 'experts' has null rows"):
        _matrix(pa.chunked_array([lists.slice(1, 3)]), 2, np.int16, "experts", "w")
    spanning = pa.ListArray.from_arrays(pa.array([0, 2, 4, 6], pa.int32()), pa.array(range(6), pa.int16()),
                                        mask=pa.array([False, True, False]))  # the null row spans values 2-3
    assert _matrix(pa.chunked_array([spanning]), 2, np.int16, "lookahead", "w", fill_nulls=-1).tolist() == \
        [[0, 1], [-1, -1], [4, 5]]


def test_reading_lists_with_null_rows_does_not_import_pyarrow_compute(tmp_path):
    path = tmp_path / "t.parquet"
    write_small(path, lookahead=True)  # the last layer's rows have no lookahead: null lists
    code = ("import sys; from traces.reader import open_trace; "
            f"arrays = open_trace({str(path)!r}).arrays(lookahead=True); "
            "print((arrays.lookahead < 0).all(axis=1).tolist(), 'pyarrow.compute' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout
    assert out.split("]")[1].strip() == "False" and out.startswith("[False, True, False, True, False, True]")


def test_every_array_a_trace_hands_out_is_read_only(tmp_path):
    # numba compiles a kernel per kind of array: decoded (phase, matrices), zero-copy, joined and empty arrays
    # must all be read-only, or a policy's replay kernel is compiled up to three times
    from traces.model_specs import load_spec
    from traces.synth import SynthParams, synthesize

    path = tmp_path / "t.parquet"
    synthesize(load_spec("mixtral-8x7b"), path, SynthParams(requests=2, prompt_tokens=3, decode_tokens=5,
                                                            logits=True, lookahead_accuracy=0.8))
    trace = open_trace(path)
    parts = list(trace.iter_arrays(logits=True, lookahead=True))
    for arrays in [*parts, trace.arrays(logits=True, lookahead=True), reader.TraceArrays.concat(parts),
                   reader._empty(trace.meta, True, True)]:
        names = [name for name in reader.TraceArrays.__dataclass_fields__ if getattr(arrays, name) is not None]
        assert {"phase", "experts", "logits", "lookahead", "weights"} <= set(names)
        assert [name for name in names if getattr(arrays, name).flags.writeable] == []


def test_logits_nan_check_matches_numpy_for_every_float16():
    from traces.reader import _has_nan

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    assert [_has_nan(every[i:i + 1]) for i in range(len(every))] == np.isnan(every).tolist()
    assert not _has_nan(np.zeros((0, 4), np.float16)) and _has_nan(np.array([[1.0, np.nan]], np.float16))
