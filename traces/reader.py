"""Open and validate a trace; hand the simulator compact numpy arrays and analysis a polars LazyFrame.

`open_trace` checks the file, its columns and its metadata before anything else reads it, so every
later consumer can trust shapes and ranges. Large traces are read a batch of rows at a time with
`Trace.iter_arrays`; `Trace.arrays` concatenates them for traces that fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from traces.errors import MoecacheError
from traces.schema import PHASES, TraceMeta, check_columns

if TYPE_CHECKING:
    import polars as pl

BATCH_ROWS = 65_536  # rows decoded at a time: the replay starts on a row group's first rows, not its last
BATCH_LOGITS_BYTES = 4 << 20  # at most this much of router logits per batch (see `Trace.batch_rows`)


@dataclass
class TraceArrays:
    """Rows of a trace as numpy arrays. N rows, K top-k, E experts."""

    request: np.ndarray  # (N,) int32
    token: np.ndarray  # (N,) int32
    phase: np.ndarray  # (N,) int8: 0 prefill, 1 decode
    layer: np.ndarray  # (N,) int16
    experts: np.ndarray  # (N, K) int16, router order
    weights: np.ndarray | None  # (N, K) float32; None when not read
    logits: np.ndarray | None = None  # (N, E) float16
    lookahead: np.ndarray | None = None  # (N, K) int16, -1 rows where there is no next layer
    step: np.ndarray | None = None  # (N,) int64: the batched forward call of each row, when the trace has it

    def __len__(self) -> int:
        return len(self.request)

    def frozen(self) -> TraceArrays:
        """These arrays made read-only. A column Arrow hands over without a copy is read-only and a decoded or
        concatenated one writable, and numba compiles a kernel for each (a replay kernel took 10-40 s to
        compile, up to three times per policy): all read-only, each kernel is compiled once."""
        for name in TraceArrays.__dataclass_fields__:
            values = getattr(self, name)
            if values is not None:
                values.flags.writeable = False
        return self

    @staticmethod
    def concat(parts: list[TraceArrays]) -> TraceArrays:
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return TraceArrays(**{name: cat(name) for name in TraceArrays.__dataclass_fields__}).frozen()


@dataclass
class Trace:
    """An opened, validated trace file."""

    path: Path
    meta: TraceMeta
    num_rows: int
    num_row_groups: int
    has_logits: bool
    has_lookahead: bool
    has_step: bool = False

    def iter_arrays(self, logits: bool = False, lookahead: bool = False, weights: bool = True
                    ) -> Iterator[TraceArrays]:
        """Yield one TraceArrays per batch of at most `batch_rows` rows of a Parquet row group (constant memory
        for any trace size); the simulator skips the weights it does not need. Decoding a large row group's
        router logits takes about 0.4 s, so the replay need not wait for a whole one before its first step."""
        columns = ["request", "token", "phase", "layer", "experts"] + (["weights"] if weights else []) \
            + (["step"] if self.has_step else [])
        if logits:
            self._require("logits", self.has_logits, "record with --logits")
            columns.append("logits")
        if lookahead:
            self._require("lookahead", self.has_lookahead, "record with --lookahead")
            columns.append("lookahead")
        parquet = pq.ParquetFile(self.path)
        rows = self.batch_rows(logits)
        for index in range(self.num_row_groups):
            for batch in self._batches(parquet, index, columns, rows):
                yield self._convert(pa.Table.from_batches([batch]), index)

    def batch_rows(self, logits: bool) -> int:
        """Rows per batch: BATCH_ROWS, fewer with router logits, so that a batch's logits stay within
        BATCH_LOGITS_BYTES. Decoded in batches of 65,536 rows, the logits of a 128-expert trace (16 MiB a batch)
        went to fresh pages each time: 0.4-1.0 s of page faults per 10M accesses, and the whole replay took
        2.7 s where batches of 16,384 rows take 1.8-2.0 s."""
        return min(BATCH_ROWS, max(1, BATCH_LOGITS_BYTES // (2 * self.meta.num_experts))) if logits else BATCH_ROWS

    def _batches(self, parquet: pq.ParquetFile, index: int, columns: list[str], rows: int
                 ) -> Iterator[pa.RecordBatch]:
        """Row group `index` in batches; a read error ends in one line naming the file and the row group."""
        try:
            yield from parquet.iter_batches(rows, row_groups=[index], columns=columns, use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise MoecacheError(f"{self.path} (row group {index}): cannot be read "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    def validate(self) -> None:
        """Read every row group with every column once, so that a bad row fails here with one clear line
        (commands that read rows through other paths, such as polars, call this first)."""
        for _ in self.iter_arrays(logits=self.has_logits, lookahead=self.has_lookahead):
            pass

    def arrays(self, logits: bool = False, lookahead: bool = False) -> TraceArrays:
        """The whole trace in memory."""
        parts = list(self.iter_arrays(logits=logits, lookahead=lookahead))
        if not parts:
            return _empty(self.meta, logits, lookahead)
        return TraceArrays.concat(parts)

    def lazy(self) -> pl.LazyFrame:
        """A polars LazyFrame over the file, for statistics (phase as a string column)."""
        import polars as pl

        return pl.scan_parquet(self.path).with_columns(pl.col("phase").cast(pl.String))

    def _require(self, column: str, present: bool, fix: str) -> None:
        if not present:
            raise MoecacheError(f"{self.path}: this trace has no '{column}' column; {fix}")

    def _convert(self, table: pa.Table, group: int) -> TraceArrays:
        """Columns to arrays, checking every value a consumer relies on: ranges, lengths, nulls, finiteness."""
        meta = self.meta
        where = f"{self.path} (row group {group})"
        for name in ("request", "token", "phase", "layer"):
            if table.column(name).null_count:
                raise MoecacheError(f"{where}: column '{name}' has null rows")
        phase = _phase_codes(table.column("phase"), where)
        layer = table.column("layer").to_numpy().astype(np.int16, copy=False)
        _check_range(layer, 0, meta.num_layers - 1, "layer", where, "metadata num_layers")
        experts = _matrix(table.column("experts"), meta.top_k, np.int16, "experts", where)
        _check_range(experts, 0, meta.num_experts - 1, "experts", where, "metadata num_experts")
        request = table.column("request").to_numpy().astype(np.int32, copy=False)
        token = table.column("token").to_numpy().astype(np.int32, copy=False)
        _check_range(request, 0, None, "request", where, "ids are 0 or more")
        _check_range(token, 0, None, "token", where, "positions are 0 or more")
        arrays = TraceArrays(request=request, token=token, phase=phase, layer=layer, experts=experts, weights=None)
        if "weights" in table.column_names:
            arrays.weights = _matrix(table.column("weights"), meta.top_k, np.float32, "weights", where)
            if not np.isfinite(arrays.weights).all() or (arrays.weights < 0).any():
                raise MoecacheError(f"{where}: column 'weights' holds NaN, infinite or negative routing weights")
        if "logits" in table.column_names:
            arrays.logits = _matrix(table.column("logits"), meta.num_experts, np.float16, "logits", where)
            if _has_nan(arrays.logits):
                raise MoecacheError(f"{where}: column 'logits' holds NaN")
        if "lookahead" in table.column_names:
            arrays.lookahead = _matrix(table.column("lookahead"), meta.top_k, np.int16, "lookahead", where,
                                       fill_nulls=-1)
            _check_range(arrays.lookahead, -1, meta.num_experts - 1, "lookahead", where,
                         "expert ids, or -1 for none")
        if "step" in table.column_names:
            if table.column("step").null_count:
                raise MoecacheError(f"{where}: column 'step' has null rows")
            arrays.step = table.column("step").to_numpy().astype(np.int64, copy=False)
            _check_range(arrays.step, 0, None, "step", where, "forward calls are numbered from 0")
            if (np.diff(arrays.step) < 0).any():
                raise MoecacheError(f"{where}: column 'step' goes backwards; rows must be in execution order")
        return arrays.frozen()


def _has_nan(values: np.ndarray) -> bool:
    """Whether float16 `values` hold a NaN: their bits above 0x7C00 (as int16) or 0xFC00 (as uint16), two
    reductions without temporaries, 10x faster than numpy's float16 isnan."""
    bits = values.view(np.uint16)
    return bool(bits.size) and (int(bits.max()) > 0xFC00 or int(bits.view(np.int16).max()) > 0x7C00)


def _check_range(values: np.ndarray, low: int, high: int | None, name: str, where: str, why: str) -> None:
    """One clear line naming the column when a value falls outside low..high."""
    if not values.size:
        return
    if values.min() < low or (high is not None and values.max() > high):
        bad = values[(values < low) | (values > high if high is not None else False)].flat[0]
        allowed = f"{low}..{high}" if high is not None else f"{low} or more"
        raise MoecacheError(f"{where}: column '{name}' holds {int(bad)}, outside {allowed} ({why})")


def open_trace(path: Path | str) -> Trace:
    """Open `path`, validate format and metadata, and fail with one clear line if anything is off."""
    path = Path(path)
    if not path.exists():
        raise MoecacheError(f"{path}: no such file")
    if path.is_dir():
        raise MoecacheError(f"{path}: is a folder, expected a trace file (.parquet)")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MoecacheError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    meta = TraceMeta.from_parquet(parquet.metadata.metadata, str(path))
    schema = parquet.schema_arrow
    check_columns(schema, path)
    return Trace(
        path=path,
        meta=meta,
        num_rows=parquet.metadata.num_rows,
        num_row_groups=parquet.metadata.num_row_groups,
        has_logits="logits" in schema.names,
        has_lookahead="lookahead" in schema.names,
        has_step="step" in schema.names,
    )


def _empty(meta: TraceMeta, logits: bool, lookahead: bool) -> TraceArrays:
    k, e = meta.top_k, meta.num_experts
    return TraceArrays(
        np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int16),
        np.zeros((0, k), np.int16), np.zeros((0, k), np.float32),
        np.zeros((0, e), np.float16) if logits else None,
        np.zeros((0, k), np.int16) if lookahead else None,
    ).frozen()


def _phase_codes(column: pa.ChunkedArray, where: str) -> np.ndarray:
    codes = []
    for chunk in column.chunks:
        names = chunk.dictionary.to_pylist()
        unknown = set(names) - set(PHASES)
        if unknown:
            raise MoecacheError(f"{where}: column 'phase' holds {sorted(unknown)}; allowed: {list(PHASES)}")
        remap = np.array([PHASES.index(p) for p in names] or [0], dtype=np.int8)
        codes.append(remap[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(codes) if codes else np.zeros(0, np.int8)


def _nulls(chunk: pa.Array) -> np.ndarray:
    """(N,) bool: which rows of `chunk` are null, from its validity bitmap (bit i of the buffer is row
    offset + i, least significant bit first)."""
    if not chunk.null_count:
        return np.zeros(len(chunk), bool)
    bitmap = np.frombuffer(chunk.buffers()[0], np.uint8)
    return np.unpackbits(bitmap, bitorder="little")[chunk.offset:chunk.offset + len(chunk)] == 0


def _matrix(column: pa.ChunkedArray, width: int, dtype: type, name: str, where: str,
            fill_nulls: int | None = None) -> np.ndarray:
    """A list column as an (N, width) matrix; every non-null list must have exactly `width` items."""
    rows = []
    for chunk in column.chunks:  # offsets, values and the validity bitmap, not value_lengths(), flatten(), is_null()
        offsets = chunk.offsets.to_numpy()  # nor drop_null(): they import pyarrow.compute (25 ms of a command)
        lengths = np.diff(offsets)
        nulls = _nulls(chunk)
        if fill_nulls is None and nulls.any():
            raise MoecacheError(f"{where}: column '{name}' has null rows")
        bad = (lengths != width) & ~nulls
        if bad.any():
            raise MoecacheError(
                f"{where}: column '{name}' has lists of length {int(lengths[bad][0])}, expected {width}"
            )
        flat = chunk.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
        flat = flat.astype(dtype, copy=False)
        if nulls.any():  # a null list may still span values: take each kept list from its offset
            filled = np.full((len(chunk), width), fill_nulls, dtype=dtype)
            filled[~nulls] = flat[(offsets[:-1][~nulls] - offsets[0])[:, None] + np.arange(width)]
            rows.append(filled)
        else:
            rows.append(flat.reshape(-1, width))
    if not rows:
        return np.zeros((0, width), dtype=dtype)
    return rows[0] if len(rows) == 1 else np.concatenate(rows)
