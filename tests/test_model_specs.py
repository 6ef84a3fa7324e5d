"""Model specs: every shipped spec loads and its bytes follow from its dimensions."""

from __future__ import annotations

import pytest

from traces.data_files import data_dir
from traces.errors import MoecacheError
from traces.model_specs import available_specs, load_spec

REQUIRED = {"mixtral-8x7b", "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "deepseek-v2-lite",
            "gpt-oss-20b", "gpt-oss-120b"}


def test_required_specs_ship_and_load():
    assert REQUIRED <= set(available_specs())
    for name in available_specs():
        spec = load_spec(name)
        assert spec.name == name and spec.top_k <= spec.num_experts and spec.sources


def test_hand_computed_expert_bytes():
    assert load_spec("mixtral-8x7b").bytes_per_expert == 3 * 4096 * 14336 * 2  # ~352 MB, as the logs' README
    assert load_spec("qwen3-30b-a3b").bytes_per_expert == 3 * 2048 * 768 * 2
    # MXFP4: 17 bytes per 32 weights, plus bf16 biases
    assert load_spec("gpt-oss-20b").bytes_per_expert == 3 * 2880 * 2880 * 17 // 32 + (2 * 2880 + 2880) * 2


def test_spec_errors(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text((data_dir("models") / "mixtral-8x7b.toml").read_text())
    assert load_spec(good) == load_spec("mixtral-8x7b")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("bytes_per_expert = 352321536", "bytes_per_expert = 352"))
    with pytest.raises(MoecacheError, match="the dimensions give 352321536"):
        load_spec(bad)
    bad.write_text("colour = 1\n" + good.read_text())
    with pytest.raises(MoecacheError, match="unknown key"):
        load_spec(bad)
    bad.write_text(good.read_text().replace("top_k = 2", 'top_k = "two"'))
    with pytest.raises(MoecacheError, match="top_k = 'two' must be a whole number"):
        load_spec(bad)
    with pytest.raises(MoecacheError, match="unknown model spec"):
        load_spec("nope")
