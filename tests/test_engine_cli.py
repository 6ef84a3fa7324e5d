"""`run`, `pack`, `checkpoint tiny --like` and `calibrate` from the command line: records, files, and
one-line errors with exit code 2 that leave nothing half-written."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.layout import PACKED_DATA, open_layout
from engine.like_checkpoint import write_like_checkpoint
from traces.model_specs import load_spec

NAMES = ("trace", "policy", "prefetch", "vram_bytes", "ram_bytes", "accesses", "vram_hits", "vram_misses",
         "vram_hit_rate", "ram_hits", "ram_misses", "ram_hit_rate", "hit_rate", "misses", "bytes_nvme_to_ram",
         "bytes_ram_to_vram", "evictions", "prefetch_issued", "prefetch_used", "prefetch_accuracy",
         "prefetch_coverage", "stall_p50_ms", "stall_p99_ms", "time_per_token_s", "tokens_per_s",
         "routing_changed_steps", "routing_weight_lost")
MEASURED = ("measured_time_per_token_s", "measured_tokens_per_s", "measured_stall_p50_ms", "measured_stall_p99_ms",
            "measured_bytes_nvme_to_ram", "measured_bytes_ram_to_vram", "measured_total_s", "measured_device")


def small_spec(arch_spec: str = "olmoe-1b-7b", **changes):
    """A shipped spec shrunk to test size, with its bytes per expert following the new dimensions."""
    spec = dataclasses.replace(load_spec(arch_spec), hidden_size=64, expert_intermediate_size=32, num_experts=8,
                               top_k=2, **changes)
    return dataclasses.replace(spec, bytes_per_expert=spec.derived_bytes())


def test_run_json_and_parquet_carry_every_name(run_cli, tiny_checkpoint, routed_trace, tmp_path):
    checkpoint = tiny_checkpoint("mixtral")
    out = tmp_path / "run.parquet"
    code, stdout, _ = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "-p", "watermark", "--vram-experts",
                              "4", "--ram-experts", "8", "--prefetch", "transitions", "--json", "-o", out)
    assert code == 0
    record = json.loads(stdout)["runs"][0]
    assert set(NAMES) <= set(record) and set(MEASURED) <= set(record)
    assert record["measured_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert record["measured_tokens_per_s"] > 0 and record["prefetch_issued"] > 0
    table = pq.read_table(out)
    assert table.num_rows == 1 and set(NAMES + MEASURED) <= set(table.column_names)


def test_run_without_o_direct_drops_the_page_cache_instead(run_cli, tiny_checkpoint, routed_trace):
    checkpoint = tiny_checkpoint("olmoe")
    runs = []
    for flag in ("--direct", "--no-direct"):
        code, stdout, _ = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--vram-experts", "4",
                                  "--ram-experts", "6", "--json", flag)
        assert code == 0
        runs.append(json.loads(stdout)["runs"][0])
    from engine.nvme import open_uncached

    fd, supported = open_uncached(checkpoint / "model.safetensors")  # O_DIRECT where this filesystem has it
    os.close(fd)
    assert (runs[0]["measured_o_direct"], runs[1]["measured_o_direct"]) == (supported, False)
    assert runs[0]["measured_bytes_nvme_to_ram"] == runs[1]["measured_bytes_nvme_to_ram"] > 0


def test_run_prints_a_summary_for_people(run_cli, tiny_checkpoint, routed_trace):
    checkpoint = tiny_checkpoint("qwen3_moe")
    code, stdout, _ = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--vram-experts", "4", "--ram", "0",
                              "--no-live", "--device", "cpu")
    assert code == 0 and "host-memory budget" in stdout and "measured" in stdout and "tokens_per_s" in stdout


def test_ctrl_c_prints_the_summary_so_far_and_exits_2(run_cli, tiny_checkpoint, routed_trace, monkeypatch):
    from engine.executor import Executor

    original = Executor.finish_step
    calls = {"n": 0}

    def interrupted(self, decode):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        original(self, decode)

    monkeypatch.setattr(Executor, "finish_step", interrupted)
    checkpoint = tiny_checkpoint("mixtral")
    code, stdout, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--vram-experts", "4", "--json")
    assert code == 2 and "interrupted" in err
    assert json.loads(stdout)["runs"][0]["measured_steps"] == 9


def test_pack_writes_one_aligned_block_per_expert(run_cli, tiny_checkpoint, tmp_path):
    source = tiny_checkpoint("olmoe")
    out = tmp_path / "packed"
    code, _, _ = run_cli("pack", source, "-o", out, "-q")
    assert code == 0
    layout = open_layout(out)
    assert layout.packed and layout.format.slot_bytes % 4096 == 0
    tensors = load_file(str(source / "model.safetensors"))
    blocks = (out / PACKED_DATA).read_bytes()
    e, obj = 5, 1 * layout.num_experts + 5  # layer 1, expert 5
    p = f"model.layers.1.mlp.experts.{e}."
    want = b"".join(tensors[p + n + ".weight"].numpy().tobytes() for n in ("gate_proj", "up_proj", "down_proj"))
    start = obj * layout.format.slot_bytes
    assert blocks[start:start + len(want)] == want
    others = load_file(str(out / "model.safetensors"))
    assert "model.layers.1.mlp.gate.weight" in others and not any(".experts." in name for name in others)
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists()


def test_like_checkpoint_loads_in_its_model_class(tmp_path):
    from transformers import AutoModelForCausalLM

    for arch, name in (("olmoe-1b-7b", "olmoe"), ("mixtral-8x7b", "mixtral"), ("gpt-oss-20b", "gpt"),
                       ("qwen1.5-moe-a2.7b", "qwen2"), ("deepseek-v2-lite", "deepseek")):
        spec = small_spec(arch, dtype="bfloat16", expert_bias_params=0)
        folder, _ = write_like_checkpoint(tmp_path / name, spec, layers=2, seed=3)
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], (arch, info)
        layout = open_layout(folder)
        assert layout.num_experts == 8 and layout.format.hidden == 64 and layout.format.intermediate == 32
        assert next(model.parameters()).dtype == torch.bfloat16


def test_like_checkpoint_has_the_real_expert_size(run_cli, tmp_path):
    out = tmp_path / "olmoe"
    code, stdout, _ = run_cli("checkpoint", "tiny", out, "--like", "olmoe-1b-7b", "--layers", "1", "-q")
    assert code == 0
    layout = open_layout(out)
    assert layout.format.expert_bytes == load_spec("olmoe-1b-7b").bytes_per_expert == 12_582_912
    assert (layout.num_layers, layout.num_experts) == (1, 64)
    trace = tmp_path / "olmoe.parquet"
    assert run_cli("traces", "synth", "--like", "olmoe-1b-7b", "--layers", "1", "--requests", "1",
                   "--prompt-tokens", "4", "--decode-tokens", "4", "-o", trace, "-q")[0] == 0
    code, stdout, _ = run_cli("run", trace, "-w", out, "--vram-experts", "16", "--ram-experts", "32", "--json")
    assert code == 0 and json.loads(stdout)["runs"][0]["measured_bytes_nvme_to_ram"] > 0


def test_calibrate_writes_a_preset_that_simulate_reads(run_cli, tmp_path, tiny_checkpoint, routed_trace):
    preset = tmp_path / "here.toml"
    code, stdout, _ = run_cli("calibrate", "--like", "qwen3-30b-a3b", "-o", preset, "--dir", tmp_path,
                              "--disk-mib", "16", "--device", "cpu")
    assert code == 0 and preset.exists() and not list(tmp_path.glob(".moecache-calibrate*"))
    text = preset.read_text()
    assert "measured by moecache calibrate on" in text and "gpu_expert_overhead_s" in text
    checkpoint = tiny_checkpoint("mixtral")
    code, stdout, _ = run_cli("simulate", routed_trace(checkpoint), "--preset", preset, "--vram-experts", "4",
                              "--json")
    assert code == 0 and json.loads(stdout)["runs"][0]["time_per_token_s"] > 0


def _copy(checkpoint, tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(checkpoint, dest)
    return dest


def test_weights_that_do_not_match_the_trace(run_cli, tiny_checkpoint, routed_trace, tmp_path):
    from engine.tiny_checkpoint import write_tiny_checkpoint

    trace = routed_trace(tiny_checkpoint("mixtral"))
    cases = {"3 MoE layers": dict(layers=3), "16 experts": dict(experts=16), "bytes": dict(hidden=32)}
    for message, sizes in cases.items():
        other = write_tiny_checkpoint(tmp_path / message.replace(" ", "-"), "mixtral", **sizes)
        code, _, err = run_cli("run", trace, "-w", other, "--vram-experts", "4")
        assert code == 2 and "do not match" in err and message.split()[-1] in err and err.count("\n") == 1


def test_broken_checkpoints(run_cli, tiny_checkpoint, routed_trace, tmp_path):
    source = tiny_checkpoint("qwen3_moe")
    trace = routed_trace(source)
    truncated = _copy(source, tmp_path, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    missing = _copy(source, tmp_path, "missing")
    (missing / "model.safetensors").unlink()
    lacking = _copy(source, tmp_path, "lacking")
    tensors = load_file(str(lacking / "model.safetensors"))
    del tensors["model.layers.2.mlp.experts.3.up_proj.weight"]
    save_file(tensors, str(lacking / "model.safetensors"), metadata={"format": "pt"})
    for folder, message in ((truncated, "truncated"), (missing, "no .safetensors weights"),
                            (lacking, "lacks expert 3 of decoder layer 2"), (tmp_path / "nowhere", "no config.json")):
        code, _, err = run_cli("run", trace, "-w", folder, "--vram-experts", "4")
        assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("args, message", [
    (["--vram-experts", "1"], "cannot hold one step's"),
    (["--vram", "1KB"], "cannot hold one step's"),
    (["-p", "clock"], "unknown policy 'clock'"),
    (["--prefetch-limit", "0"], "--prefetch-limit must be at least 1"),
    (["--device", "tpu"], "choose auto, cuda or cpu"),
])
def test_run_bad_flags(run_cli, tiny_checkpoint, routed_trace, args, message):
    checkpoint = tiny_checkpoint("mixtral")
    code, _, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, *args)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(run_cli, tiny_checkpoint, routed_trace):
    checkpoint = tiny_checkpoint("mixtral")
    code, _, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--device", "cuda")
    assert code == 2 and "no CUDA device" in err


def test_cuda_out_of_memory_is_one_line(run_cli, tiny_checkpoint, routed_trace, monkeypatch):
    from engine import replay

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(replay, "Executor", no_memory)
    checkpoint = tiny_checkpoint("mixtral")
    code, _, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--vram-experts", "4")
    assert code == 2 and "CUDA out of memory allocating the VRAM tier" in err and err.count("\n") == 1


def test_full_disk_leaves_nothing(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    import shutil as sh

    usage = sh.disk_usage(tmp_path)
    monkeypatch.setattr("engine.like_checkpoint.shutil.disk_usage", lambda p: usage._replace(free=10 << 20))
    code, _, err = run_cli("checkpoint", "tiny", tmp_path / "big", "--like", "olmoe-1b-7b", "--layers", "2")
    assert code == 2 and "GiB free" in err and not (tmp_path / "big").exists()
    code, _, err = run_cli("pack", tiny_checkpoint("mixtral"), "-o", tmp_path / "p")
    assert code == 2 and "GiB free" in err and not (tmp_path / "p").exists()
    monkeypatch.undo()

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("engine.pack.write_streaming", enospc)
    code, _, err = run_cli("pack", tiny_checkpoint("mixtral"), "-o", tmp_path / "full")
    assert code == 2 and "No space left on device" in err
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".full*"))
    monkeypatch.setattr("engine.like_checkpoint.write_streaming", enospc)
    code, _, err = run_cli("checkpoint", "tiny", tmp_path / "like", "--like", "olmoe-1b-7b", "--layers", "1")
    assert code == 2 and "No space left on device" in err
    assert not (tmp_path / "like").exists() and not list(tmp_path.glob(".like*"))
