"""`checkpoint tiny` from the command line, and Ctrl-C during `record` through the CLI."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from traces.reader import open_trace


def test_checkpoint_tiny_writes_the_asked_geometry(run_cli, tmp_path):
    out = tmp_path / "olmoe"
    code, stdout, _ = run_cli("checkpoint", "tiny", out, "--arch", "olmoe", "--layers", "3", "--experts", "6",
                              "--top-k", "3", "--hidden", "32")
    assert code == 0 and "checkpoint written" in stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["num_experts"],
            config["num_experts_per_tok"], config["hidden_size"]) == ("olmoe", 3, 6, 3, 32)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert f.get_tensor("model.layers.2.mlp.experts.5.down_proj.weight").shape == (32, 64)
    assert "model.layers.2.mlp.experts.6.down_proj.weight" not in names
    assert (out / "tokenizer.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--layers", "0"], "--layers 0 must be at least 1"),
    (["--top-k", "9"], "--top-k 9 must be within 1..--experts (8)"),
    (["--arch", "llama"], "--arch llama: choose one of"),
    (["--like", "no-such-model"], "unknown model spec 'no-such-model'"),
])
def test_checkpoint_tiny_bad_input(run_cli, tmp_path, args, message):
    code, _, err = run_cli("checkpoint", "tiny", tmp_path / "x", *args)
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_checkpoint_tiny_refuses_a_folder_in_use(run_cli, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    code, _, err = run_cli("checkpoint", "tiny", tmp_path / "used")
    assert code == 2 and "not empty" in err and (tmp_path / "used" / "keep.txt").read_text() == "mine"


def test_ctrl_c_during_record_keeps_a_valid_incomplete_trace(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    from traces import recording

    original = recording._Session._write
    calls = {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:  # after the prefill and two decode tokens are written
            raise KeyboardInterrupt
        original(self, *args)

    monkeypatch.setattr(recording._Session, "_write", interrupted)
    out = tmp_path / "t.parquet"
    code, _, err = run_cli("record", tiny_checkpoint("mixtral"), "-p", "Hello there", "--max-new-tokens", "8",
                           "--ignore-eos", "-o", out, "--quiet")
    assert code == 2 and "incomplete" in err
    trace = open_trace(out)
    assert not trace.meta.complete
    arrays = trace.arrays()
    layers = trace.meta.num_layers
    prompt = len("Hello there".encode())
    assert len(arrays) == layers * prompt + 2 * layers  # the prompt and two decode tokens, every layer
