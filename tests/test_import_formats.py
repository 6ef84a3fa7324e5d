"""Every common routing-log shape imports, each on a file written here, with rows and counts worked out
by hand; batched calls become `step` steps that simulate and stats honour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.hardware import load_hardware
from simulator.replay import SimConfig, simulate
from traces.errors import MoecacheError
from traces.importers import detect_format, import_log
from traces.model_specs import load_spec
from traces.reader import open_trace

MIXTRAL = load_spec("mixtral-8x7b")  # 32 layers, 8 experts, top-2
ROUTE_ROWS = [  # call 0: r1 tokens 0, 1 and r2 token 2 (prompts); call 1: r1 and r2 decode one token each
    ("r1", 0, 0, [1, 2]), ("r1", 1, 0, [3, 2]), ("r2", 2, 0, [5, 6]),
    ("r1", 0, 5, [0, 1]), ("r1", 1, 5, [0, 7]), ("r2", 2, 5, [4, 7]),
    ("r1", 0, 0, [1, 4]), ("r2", 1, 0, [5, 4]),
    ("r1", 0, 5, [2, 1]), ("r2", 1, 5, [2, 3]),
]


def write_jsonl(path, items):
    path.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    return path


def route_log(path, rows=ROUTE_ROWS):
    meta = {"type": "meta", "model_id": "mixtral-test", "layers_logged": [0, 5], "top_k": 2}
    return write_jsonl(path, [meta] + [{"type": "route", "req_id": r, "token_idx": t, "layer": layer,
                                        "topk_ids": e, "topk_weights": [0.7, 0.3]} for r, t, layer, e in rows])


def test_route_rows_become_batched_steps(tmp_path, run_cli):
    src = route_log(tmp_path / "routes.jsonl")
    assert detect_format(src) == "route-jsonl"
    out = tmp_path / "routes.parquet"
    summary = import_log(src, MIXTRAL, out)
    assert (summary.calls, summary.requests, summary.prefill_tokens, summary.decode_tokens) == (2, 2, 3, 2)
    trace = open_trace(out)
    assert trace.has_step and trace.meta.num_layers == 2 and trace.meta.moe_layer_ids == (0, 5)
    a = trace.arrays()
    # written call by call, layer by layer; r1 takes positions 0, 1 then 2; r2 takes 0 then 1
    assert a.step.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert a.layer.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert a.request.tolist() == [0, 0, 1, 0, 0, 1, 0, 1, 0, 1]
    assert a.token.tolist() == [0, 1, 0, 0, 1, 0, 2, 1, 2, 1]
    assert a.phase.tolist() == [0] * 6 + [1] * 4
    # steps: (call 0, layer 0) needs {1,2,3,5,6}; (0, 1) {0,1,7,4}; (1, 0) {1,4,5}; (1, 1) {2,1,3}: 15 accesses.
    # With room for every expert, the misses are the first uses: 5 + 4 + 1 (4) + 2 (2, 3) = 12, so 3 hits.
    config = SimConfig(policy="lru", hardware=load_hardware("desktop-24gb-pcie4"), vram_experts=16, ram_experts=16)
    result = simulate(out, config)
    assert (result.steps, result.accesses, result.vram_hits) == (4, 15, 3)
    assert (result.prefill_tokens, result.decode_tokens) == (3, 2)
    code, stdout, _ = run_cli("traces", "stats", out, "--json")
    assert code == 0 and json.loads(stdout)["stats"][0]["rows"] == 10


def test_a_call_restart_is_seen_per_layer(tmp_path):
    rows = [("a", 0, 0, [1, 2]), ("a", 0, 5, [1, 2]),  # call 0, token-major order
            ("a", 0, 5, [3, 4]),  # token 0 again at layer 5: call 1 there
            ("a", 0, 0, [2, 3]), ("a", 0, 0, [2, 3])]  # layer 0: call 1, then call 2
    summary = import_log(route_log(tmp_path / "r.jsonl", rows), MIXTRAL, tmp_path / "r.parquet")
    a = open_trace(tmp_path / "r.parquet").arrays()
    assert summary.calls == 3 and a.step.tolist() == [0, 0, 1, 1, 2] and a.layer.tolist() == [0, 1, 0, 1, 0]
    assert a.token.tolist() == [0, 0, 1, 1, 2]  # one token per call, positions in call order


def test_layer_idx_rows(tmp_path):
    items = [{"layer_idx": layer, "token_idx": token, "selected_ids": [token % 8, (token + 1) % 8],
              "gate_weights": [0.5, 0.5]} for token in range(3) for layer in range(32)]
    src = write_jsonl(tmp_path / "l.jsonl", items)
    assert detect_format(src) == "layer-idx-jsonl"
    summary = import_log(src, MIXTRAL, tmp_path / "l.parquet")
    assert (summary.requests, summary.decode_tokens, summary.rows_written) == (1, 3, 96)
    a = open_trace(tmp_path / "l.parquet").arrays()
    assert a.experts[32 * 2 + 7].tolist() == [2, 3] and a.layer[32 * 2 + 7] == 7 and a.token[32 * 2 + 7] == 2


def test_routed_expert_arrays(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.integers(0, 8, (5, 32, 2))
    np.save(tmp_path / "one.npy", one)
    np.savez(tmp_path / "many.npz", r10=rng.integers(0, 8, (3, 32, 2)), r2=one)
    summary = import_log(tmp_path / "one.npy", MIXTRAL, tmp_path / "one.parquet", prompt_tokens=2)
    assert (summary.prefill_tokens, summary.decode_tokens, summary.rows_written) == (2, 3, 160)
    a = open_trace(tmp_path / "one.parquet").arrays()
    # prefill layer by layer: rows 0-1 are tokens 0, 1 of layer 0; decode token 2 starts at row 64
    assert a.experts[:2].tolist() == one[:2, 0].tolist() and (a.phase[:64] == 0).all()
    assert a.token[64] == 2 and a.experts[64 + 9].tolist() == one[2, 9].tolist()
    np.testing.assert_allclose(a.weights, 0.5)
    summary = import_log(tmp_path / "many.npz", MIXTRAL, tmp_path / "many.parquet")
    a = open_trace(tmp_path / "many.parquet").arrays()
    assert summary.requests == 2 and a.experts[:32].tolist() == one[0].tolist()  # r2 before r10
    np.save(tmp_path / "bad.npy", rng.integers(0, 8, (5, 31, 2)))
    with pytest.raises(MoecacheError, match=r"shaped \(tokens, 32, 2\)"):
        import_log(tmp_path / "bad.npy", MIXTRAL, tmp_path / "bad.parquet")


def test_unknown_shape_names_its_fields_and_maps(tmp_path, run_cli):
    items = [{"seq": "s", "pos": token, "blk": layer, "ids": [1, 2], "probs": [0.6, 0.4]}
             for token in range(2) for layer in range(32)]
    src = write_jsonl(tmp_path / "mine.jsonl", items)
    code, _, err = run_cli("traces", "import", src, "-o", tmp_path / "x.parquet")
    assert code == 2 and "fields blk, ids, pos, probs, seq" in err and "--map experts=" in err
    assert not (tmp_path / "x.parquet").exists()
    code, stdout, _ = run_cli("traces", "import", src, "-o", tmp_path / "x.parquet", "--map", "experts=ids",
                              "--map", "weights=probs", "--map", "layer=blk", "--map", "position=pos",
                              "--map", "request=seq", "--json")
    assert code == 0 and json.loads(stdout)["rows_written"] == 64
    code, _, err = run_cli("traces", "import", src, "-o", tmp_path / "y.parquet", "--map", "colour=red")
    assert code == 2 and "unknown field" in err
