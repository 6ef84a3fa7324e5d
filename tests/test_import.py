"""Importing the real Mixtral logs: counts checked against the raw files, read independently here."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from traces.importers import import_vllm_jsonl
from traces.model_specs import load_spec
from traces.reader import open_trace

GSM8K = "mixtral-8x7b-gsm8k.jsonl"
HUMANEVAL = "mixtral-8x7b-humaneval-p0.jsonl"


def raw_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_gsm8k_counts_and_rows_match_raw(shared_log, tmp_path):
    src = shared_log(GSM8K)
    raw = raw_rows(src)
    out = tmp_path / "g.parquet"
    summary = import_vllm_jsonl(src, load_spec("mixtral-8x7b"), out)
    tokens_per_problem = {p: max(r["token_idx"] for r in raw if r["problem_id"] == p) + 1 for p in (0, 1)}
    assert summary.rows_read == len(raw) == summary.rows_written
    assert summary.requests == 2 and summary.prefill_tokens == 0
    assert summary.decode_tokens == sum(tokens_per_problem.values())
    assert summary.missing_token_layer_pairs == sum(tokens_per_problem.values()) * 32 - len(raw)
    assert summary.duplicates_dropped == 0
    trace = open_trace(out)
    arrays = trace.arrays()
    assert trace.num_rows == len(raw) and trace.meta.model == "mixtral-8x7b"
    assert trace.meta.bytes_per_expert == (352321536,)
    # every raw row is in the trace with its experts and weights, in router order
    index = {(int(q), int(t), int(l)): i for i, (q, t, l) in enumerate(zip(arrays.request, arrays.token, arrays.layer))}
    for row in raw[::97]:
        i = index[(row["problem_id"], row["token_idx"], row["layer"])]
        assert arrays.experts[i].tolist() == row["experts"]
        np.testing.assert_allclose(arrays.weights[i], row["gating_probs"], rtol=1e-6)
    # execution order: decode token by token, layers in order within a token
    first = arrays.request == 0
    keys = arrays.token[first].astype(np.int64) * 32 + arrays.layer[first]
    assert (np.diff(keys) > 0).all()


def test_humaneval_prefill_rule_and_counts(shared_log, tmp_path):
    src = shared_log(HUMANEVAL)
    raw = raw_rows(src)
    zeros = Counter(r["layer"] for r in raw if r["token_pos"] == 0)
    prefill = max(zeros.values())
    decode = max(r["token_pos"] for r in raw)  # positions 1..max are decode tokens
    out = tmp_path / "h.parquet"
    summary = import_vllm_jsonl(src, load_spec("mixtral-8x7b"), out)
    assert prefill == 84
    assert summary.prefill_tokens == prefill and summary.decode_tokens == decode
    assert summary.position0_rows_as_prefill == sum(zeros.values())
    assert summary.rows_written == len(raw)
    assert summary.missing_token_layer_pairs == (prefill + decode) * 32 - len(raw)
    assert summary.rows_per_layer_min == min(Counter(r["layer"] for r in raw).values())
    arrays = open_trace(out).arrays()
    pre = arrays.phase == 0
    assert pre.sum() == sum(zeros.values())
    # prefill written layer by layer, tokens in order; then decode starts at token `prefill`
    keys = arrays.layer[pre].astype(np.int64) * 1000 + arrays.token[pre]
    assert (np.diff(keys) > 0).all()
    assert arrays.token[~pre].min() == prefill and arrays.token[~pre].max() == prefill - 1 + decode
    # the i-th position-0 row of layer 5 in the file is prefill token i
    layer5 = [r for r in raw if r["layer"] == 5 and r["token_pos"] == 0]
    rows = np.flatnonzero(pre & (arrays.layer == 5))
    assert [arrays.experts[i].tolist() for i in rows] == [r["experts"] for r in layer5]


def test_cli_import_prints_summary(shared_log, tmp_path, run_cli):
    code, out, _ = run_cli("traces", "import", shared_log(GSM8K), "-m", "mixtral-8x7b", "-o", tmp_path / "g.parquet",
                           "--json")
    assert code == 0 and json.loads(out)["rows_written"] == 7889


def test_duplicates_are_dropped_and_counted(tmp_path):
    rows = [{"problem_id": 0, "layer": 0, "token_idx": 0, "experts": [1, 2], "gating_probs": [0.6, 0.4]},
            {"problem_id": 0, "layer": 0, "token_idx": 1, "experts": [3, 2], "gating_probs": [0.6, 0.4]},
            {"problem_id": 0, "layer": 0, "token_idx": 1, "experts": [4, 2], "gating_probs": [0.6, 0.4]}]
    src = tmp_path / "log.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    summary = import_vllm_jsonl(src, load_spec("mixtral-8x7b"), tmp_path / "t.parquet")
    assert summary.duplicates_dropped == 1 and summary.rows_written == 2
    assert summary.missing_token_layer_pairs == 2 * 31
    assert open_trace(tmp_path / "t.parquet").arrays().experts[1].tolist() == [3, 2]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{oops", "log.jsonl:2: not valid JSON"),
        ('{"layer": 0, "token_idx": 0, "experts": [1, 9], "gating_probs": [0.5, 0.5]}', "experts [1, 9]"),
        ('{"layer": 40, "token_idx": 0, "experts": [1, 2], "gating_probs": [0.5, 0.5]}', "layer 40 outside"),
        ('{"layer": 0, "experts": [1, 2], "gating_probs": [0.5, 0.5]}', "position field"),
        ('{"layer": 0, "token_pos": 0, "experts": [1, 2], "gating_probs": [0.5, 0.5]}', "mixes 'token_pos'"),
    ],
)
def test_bad_log_is_one_line_exit_2_no_output(line, message, tmp_path, run_cli):
    src = tmp_path / "log.jsonl"
    src.write_text('{"layer": 0, "token_idx": 0, "experts": [1, 2], "gating_probs": [0.5, 0.5]}\n' + line + "\n")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli("traces", "import", src, "-o", out / "t.parquet")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert list(out.iterdir()) == []


def test_unknown_model_spec(tmp_path, run_cli):
    src = tmp_path / "log.jsonl"
    src.write_text("{}\n")
    code, _, err = run_cli("traces", "import", src, "-m", "gpt-9", "-o", tmp_path / "t.parquet")
    assert code == 2 and "unknown model spec 'gpt-9'" in err and "mixtral-8x7b" in err
