"""Synthetic traces: shape, determinism, each knob moving the statistic it controls, options."""

from __future__ import annotations

import numpy as np
import pytest

from traces.errors import MoecacheError
from traces.model_specs import load_spec
from traces.reader import open_trace
from traces.stats import compute_stats
from traces.synth import SynthParams, synthesize

SPEC = load_spec("mixtral-8x7b")


def synth(tmp_path, name="s", **params):
    path = tmp_path / f"{name}.parquet"
    synthesize(SPEC, path, SynthParams(**{"requests": 4, "prompt_tokens": 5, "decode_tokens": 40, **params}))
    return open_trace(path)


def test_shape_order_and_metadata(tmp_path):
    trace = synth(tmp_path, requests=3, prompt_tokens=2, decode_tokens=3)
    a = trace.arrays()
    assert trace.num_rows == 3 * (2 + 3) * 32
    assert trace.meta.model == "mixtral-8x7b" and trace.meta.top_k == 2
    first = a.request == 0
    # prefill: layer-major (layer 0 tokens 0,1, layer 1 tokens 0,1, ...), then decode token-major
    assert a.token[first][:4].tolist() == [0, 1, 0, 1] and a.layer[first][:4].tolist() == [0, 0, 1, 1]
    assert a.token[first][64:67].tolist() == [2, 2, 2] and a.layer[first][64:67].tolist() == [0, 1, 2]
    assert (a.experts[:, 0] != a.experts[:, 1]).all()
    np.testing.assert_allclose(a.weights.sum(axis=1), 1.0, rtol=1e-5)
    assert (a.weights[:, 0] >= a.weights[:, 1]).all()


def test_same_seed_same_trace_other_seed_differs(tmp_path):
    a = synth(tmp_path, "a", seed=3).arrays()
    b = synth(tmp_path, "b", seed=3).arrays()
    c = synth(tmp_path, "c", seed=4).arrays()
    assert np.array_equal(a.experts, b.experts) and np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.experts, c.experts)


@pytest.mark.parametrize(
    "knob, low, high, metric",
    [
        ("locality", 0.0, 0.6, "repeat_rate"),
        ("cross_layer", 0.0, 0.6, "next_layer_top1"),
        ("skew", 0.0, 1.5, "top_quarter_share"),
    ],
)
def test_each_knob_raises_its_statistic(tmp_path, knob, low, high, metric):
    base = {"locality": 0.0, "cross_layer": 0.0, "skew": 0.0, "requests": 8}
    lo = compute_stats(synth(tmp_path, "lo", **{**base, knob: low}))
    hi = compute_stats(synth(tmp_path, "hi", **{**base, knob: high}))
    assert getattr(hi, metric) > getattr(lo, metric) + 0.1


def test_logits_and_lookahead_columns(tmp_path):
    trace = synth(tmp_path, logits=True, lookahead_accuracy=0.8)
    a = trace.arrays(logits=True, lookahead=True)
    top = np.argsort(-a.logits.astype(np.float32), axis=1, kind="stable")[:, :2]
    assert (top == a.experts).mean() > 0.999  # float16 ties aside, logits rank the choices
    decode = (a.phase == 1) & (a.layer < 31)
    nxt = np.flatnonzero(decode) + 1  # decode rows are token-major: the next row is layer + 1
    hit = (a.lookahead[decode] == a.experts[nxt]).mean()
    assert 0.8 <= hit <= 0.95  # 0.8 by design, plus lucky popularity draws
    assert (a.lookahead[a.layer == 31] == -1).all()


@pytest.mark.parametrize("params", [{"locality": 0.7, "cross_layer": 0.5}, {"skew": -1}, {"requests": 0},
                                    {"prompt_tokens": 0, "decode_tokens": 0}, {"lookahead_accuracy": 1.5}])
def test_invalid_knobs(tmp_path, params):
    with pytest.raises(MoecacheError):
        synth(tmp_path, **params)
    assert list(tmp_path.iterdir()) == []


def test_cli_synth(tmp_path, run_cli):
    code, _, _ = run_cli("traces", "synth", "--like", "qwen3-30b-a3b", "--requests", 1, "--prompt-tokens", 1,
                         "--decode-tokens", 2, "-o", tmp_path / "q.parquet", "--quiet")
    trace = open_trace(tmp_path / "q.parquet")
    assert code == 0 and trace.num_rows == 3 * 48 and trace.meta.top_k == 8 and trace.meta.num_experts == 128
