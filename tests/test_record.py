"""`record` on tiny checkpoints of every architecture, checked against routing recomputed
independently: a no-cache forward over the whole generated sequence with output_router_logits,
and each architecture's routing rule written out here from its published definition."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.tiny_checkpoint import ARCHITECTURES, byte_tokenizer
from traces.errors import MoecacheError
from traces.reader import open_trace
from traces.recording import RecordOptions, record


def reference_route(arch: str, config, logits: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, K) expert ids and weights, each row sorted by expert id."""
    if arch == "gpt_oss":
        top, ids = torch.topk(logits, k)
        weights = torch.softmax(top, dim=-1)
    elif arch in ("deepseek_v2", "deepseek_v3"):
        groups, per = config.n_group, logits.shape[-1] // config.n_group
        scores = logits.softmax(-1) if arch == "deepseek_v2" else logits.sigmoid()
        grouped = scores.view(-1, groups, per)
        group_score = grouped.max(-1).values if arch == "deepseek_v2" else grouped.topk(2, -1).values.sum(-1)
        keep = torch.zeros_like(group_score).scatter_(1, group_score.topk(config.topk_group, -1).indices, 1)
        masked = scores.masked_fill(~keep.repeat_interleave(per, 1).bool(), float("-inf"))
        ids = masked.topk(k, -1).indices
        weights = scores.gather(1, ids)
        if arch == "deepseek_v3":
            weights = weights / weights.sum(-1, keepdim=True)
        weights = weights * config.routed_scaling_factor
    else:
        probs = torch.softmax(logits.float(), dim=-1)
        weights, ids = torch.topk(probs, k)
        if arch == "mixtral" or getattr(config, "norm_topk_prob", False):
            weights = weights / weights.sum(-1, keepdim=True)
    order = torch.argsort(ids, dim=-1)
    return ids.gather(1, order).numpy(), weights.gather(1, order).numpy()


def by_id(experts: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(experts, axis=1)
    return np.take_along_axis(experts, order, 1), np.take_along_axis(weights, order, 1)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_recorded_routing_matches_independent_recomputation(arch, tiny_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    checkpoint = tiny_checkpoint(arch)
    out = tmp_path / "t.parquet"
    options = RecordOptions(max_new_tokens=6, logits=True, lookahead=True, stop_at_eos=False)
    result = record(checkpoint, ["moe routing", "a second, longer prompt"], out, options)
    trace = open_trace(out)
    arrays = trace.arrays(logits=True, lookahead=True)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True).eval()
    routers = [m for m in model.modules() if type(m).__name__.lower().endswith("topkrouter")]
    L, K = len(routers), trace.meta.top_k
    assert trace.meta.num_layers == L and trace.meta.architecture == arch and trace.meta.complete
    assert result.decode_tokens == 12

    for request, sequence in enumerate(result.sequences):
        prompt_len = len(sequence) - 6
        inputs: dict[int, torch.Tensor] = {}
        hooks = [r.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].reshape(-1, a[0].shape[-1])))
                 for i, r in enumerate(routers)]
        with torch.no_grad():
            full = model(torch.tensor([sequence]), output_router_logits=True)
        for h in hooks:
            h.remove()
        # the last generated token is fed once to record its decode routing, never predicted from
        for layer in range(L):
            rows = (arrays.request == request) & (arrays.layer == layer)
            tokens = arrays.token[rows]
            assert tokens.tolist() == list(range(len(sequence)))
            phases = arrays.phase[rows]
            assert (phases[:prompt_len] == 0).all() and (phases[prompt_len:] == 1).all()
            logits = full.router_logits[layer].float()
            want_ids, want_w = reference_route(arch, model.config, logits, K)
            got_ids, got_w = by_id(arrays.experts[rows], arrays.weights[rows])
            np.testing.assert_array_equal(got_ids, want_ids)
            np.testing.assert_allclose(got_w, want_w, atol=1e-4)
            np.testing.assert_allclose(arrays.logits[rows].astype(np.float32), logits.numpy(), atol=2e-2)
            ahead = arrays.lookahead[rows]
            if layer == L - 1:
                assert (ahead == -1).all()
            else:
                nxt = routers[layer + 1]
                next_logits = F.linear(inputs[layer], nxt.weight, getattr(nxt, "bias", None))
                want_ahead, _ = reference_route(arch, model.config, next_logits.detach(), K)
                np.testing.assert_array_equal(np.sort(ahead, axis=1), want_ahead)
            # router order: weights descending within each row
            assert (np.diff(arrays.weights[rows], axis=1) <= 1e-7).all()


def test_record_metadata_sizes_experts_and_maps_layers(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.parquet"
    record(tiny_checkpoint("deepseek_v2"), ["x"], out, RecordOptions(max_new_tokens=1, stop_at_eos=False))
    meta = open_trace(out).meta
    # first_k_dense_replace=1: decoder layer 0 is dense, MoE layers are decoder layers 1..3
    assert meta.moe_layer_ids == (1, 2, 3) and meta.num_layers == 3
    # one expert: gate_up (2*I x H) + down (H x I) float32, H=64, I=128
    assert meta.bytes_per_expert == (3 * 64 * 128 * 4,)
    assert meta.shared_experts == 1 and meta.top_k == 2 and meta.num_experts == 8


def test_ctrl_c_leaves_valid_incomplete_trace(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.parquet"

    def interrupt(done: int, total: int) -> None:
        if done >= 10:
            raise KeyboardInterrupt

    result = record(tiny_checkpoint("mixtral"), ["abc", "def"], out,
                    RecordOptions(max_new_tokens=20, stop_at_eos=False), progress=interrupt)
    trace = open_trace(out)
    assert result.interrupted and not trace.meta.complete
    # prefill of 3 tokens, then decode ticks at 4, 5, ... : interrupted after the tick reaching 10
    assert trace.num_rows == 10 * 4 and result.decode_tokens == 7
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_cli_record_with_jsonl_prompts(tiny_checkpoint, tmp_path, run_cli):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "first"}\n{"prompt": "second one"}\n')
    out = tmp_path / "t.parquet"
    code, stdout, _ = run_cli("record", tiny_checkpoint("olmoe"), "--prompts", prompts, "--max-new-tokens", 3,
                              "--ignore-eos", "--json", "-o", out)
    summary = json.loads(stdout)
    assert code == 0 and summary["prompts"] == 2 and summary["prompt_tokens"] == 5 + 10
    assert summary["rows"] == (15 + 6) * 4 and summary["complete"]


def _dense_checkpoint(path):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda d: d / "nothing", ["-p", "x"], "not a folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", ["-p", "x"], "no config.json"),
        (lambda d: _dense_checkpoint(d / "dense"), ["-p", "x"], "dense model"),
        (None, ["--prompts", "EMPTY"], "prompt file is empty"),
        (None, ["--prompts", "BADJSONL"], "not valid JSON"),
        (None, [], "no prompt given"),
        (None, ["-p", "x", "--max-new-tokens", "-1"], "max-new-tokens"),
    ],
)
def test_record_bad_input_is_one_line_exit_2_no_output(setup, args, message, tiny_checkpoint, tmp_path, run_cli):
    checkpoint = setup(tmp_path) if setup else tiny_checkpoint("mixtral")
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")).replace("BADJSONL", str(tmp_path / "bad.jsonl"))
            for a in args]
    out = tmp_path / "out" / "t.parquet"
    out.parent.mkdir()
    code, _, err = run_cli("record", checkpoint, *args, "-o", out)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(out.parent.iterdir()) == []


def test_record_refuses_missing_output_folder(tiny_checkpoint, tmp_path):
    with pytest.raises(MoecacheError, match="does not exist"):
        record(tiny_checkpoint("mixtral"), ["x"], tmp_path / "no" / "t.parquet", RecordOptions(max_new_tokens=1))
