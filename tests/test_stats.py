"""Statistics on a hand-built trace whose every figure is worked out by hand in the comments."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from traces.reader import open_trace
from traces.schema import TraceMeta
from traces.stats import compute_stats
from traces.writer import TraceWriter


@pytest.fixture
def hand_trace(tmp_path):
    # 1 request, 4 decode tokens, 2 layers, 4 experts, top-1
    # layer 0 experts by token: 0 0 1 0 ; layer 1: 1 1 2 1 (always the successor e+1)
    meta = TraceMeta(model="hand", architecture="x", num_layers=2, num_experts=4, top_k=1, bytes_per_expert=(1,))
    path = tmp_path / "hand.parquet"
    with TraceWriter(path, meta) as writer:
        for token, expert in enumerate([0, 0, 1, 0]):
            for layer in range(2):
                writer.append(0, np.array([token]), "decode", layer, np.array([[expert + layer]]), np.array([[1.0]]))
    return open_trace(path)


def test_hand_built_statistics(hand_trace):
    s = compute_stats(hand_trace)
    assert s.rows == 8 and s.requests == 1 and s.decode_rows == 8 and s.prefill_rows == 0
    # shares per layer [.75, .25, 0, 0]: top quarter (1 expert) holds .75
    assert s.top_quarter_share == pytest.approx(0.75)
    # gini of sorted [0, 0, .25, .75]: (n + 1 - 2 * sum(cum / total)) / n = (5 - 2 * 1.25) / 4
    assert s.gini == pytest.approx(0.625)
    # entropy: -(.75 ln .75 + .25 ln .25) / ln 4
    assert s.entropy == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(4))
    # token pairs (0,1) repeat, (1,2) and (2,3) do not, in both layers
    assert s.repeat_rate == pytest.approx(1 / 3)
    # independent: sum share * min(1, K * share) = .75^2 + .25^2
    assert s.repeat_rate_independent == pytest.approx(0.625)
    # layer 0 -> 1: expert e is always followed by e + 1
    assert s.next_layer_top1 == pytest.approx(1.0)
    assert s.next_layer_top1_independent == pytest.approx(0.75)
    # re-choice gaps: e0@L0 at tokens 0,1,3 -> gaps 1, 2; e1@L1 likewise; 4 first uses among 8 choices
    assert s.reuse_distance["first_use"] == pytest.approx(4 / 8)
    assert s.reuse_distance["1"] == pytest.approx(2 / 8)
    assert s.reuse_distance["2"] == pytest.approx(2 / 8)
    assert s.reuse_distance["3-4"] == 0
    assert s.layers[1].next_layer_top1 is None


def test_stats_cli_json_and_table(hand_trace, run_cli):
    code, out, _ = run_cli("traces", "stats", hand_trace.path, "--json")
    assert code == 0 and json.loads(out)["stats"][0]["repeat_rate"] == pytest.approx(1 / 3)
    code, out, _ = run_cli("traces", "stats", hand_trace.path, "--layers")
    assert code == 0 and "repeat_rate" in out and "per layer" in out


def test_three_traces_fit_80_columns_with_every_name_whole(hand_trace, run_cli, tmp_path, monkeypatch):
    from moecache_cli import render

    monkeypatch.setattr(render.console, "_width", 80)
    paths = [tmp_path / f"{name}.parquet" for name in ("tiny", "gsm8k", "mixtral-synth")]
    for path in paths:
        shutil.copy(hand_trace.path, path)
    code, out, _ = run_cli("traces", "stats", *paths)
    lines = out.splitlines()
    assert code == 0 and "…" not in out and max(len(line) for line in lines) <= 80
    assert any(line.split()[:1] == ["next_layer_top1_independent"] for line in lines)  # cut at 80 before
