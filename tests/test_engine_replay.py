"""The engine's replay on CPU: expert outputs against the checkpoint's tensors, counters against
`simulate`, slot bookkeeping against the planner, and no slot written while it is read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from engine.executor import HIDDEN_POOL, EngineOptions
from engine.layout import open_layout
from engine.pack import pack_checkpoint
from engine.replay import replay
from engine.tiers import overlaps
from simulator.hardware import load_hardware
from simulator.policies import REGISTRY
from simulator.replay import SimConfig, simulate
from simulator.steps import iter_steps
from traces.reader import open_trace

PRESET = load_hardware("desktop-24gb-pcie4")


def reference_expert(tensors: dict[str, torch.Tensor], arch: str, decoder_layer: int, e: int, x: torch.Tensor,
                     limit: float = 7.0) -> torch.Tensor:
    """One expert's output computed directly from the checkpoint's tensors, written out by hand."""
    if arch == "gpt_oss":
        p = f"model.layers.{decoder_layer}.mlp.experts."
        h = x @ tensors[p + "gate_up_proj"][e] + tensors[p + "gate_up_proj_bias"][e]
        gate, up = h[:, 0::2].clamp(max=limit), h[:, 1::2].clamp(-limit, limit)
        return ((up + 1) * gate * torch.sigmoid(1.702 * gate)) @ tensors[p + "down_proj"][e] \
            + tensors[p + "down_proj_bias"][e]
    if arch == "mixtral":
        p = f"model.layers.{decoder_layer}.block_sparse_moe.experts.{e}."
        w_gate, w_up, w_down = (tensors[p + n + ".weight"] for n in ("w1", "w3", "w2"))
    else:
        p = f"model.layers.{decoder_layer}.mlp.experts.{e}."
        w_gate, w_up, w_down = (tensors[p + n + ".weight"] for n in ("gate_proj", "up_proj", "down_proj"))
    return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def assert_outputs_match(done, trace, folder, **tolerance) -> None:
    """Every expert output the executor captured equals `reference_expert` on the same tokens."""
    tensors = load_file(str(folder / "model.safetensors"))
    layout = open_layout(folder)
    steps, s0 = {}, 0
    for chunk in iter_steps(open_trace(trace), weights=True):
        for s in range(len(chunk)):
            steps[s0 + s] = chunk.rows.experts[chunk.row_ptr[s]:chunk.row_ptr[s + 1]], int(chunk.layer[s])
        s0 += len(chunk)
    captured = done.executor.captured
    assert len(captured) == done.result.accesses > 0  # every demand access computed once
    for (step, obj), y in captured.items():
        experts, layer = steps[step]
        e = obj % layout.num_experts
        x = done.executor.hidden[(np.array([t for t in range(len(experts)) if e in experts[t]]) + step) % HIDDEN_POOL]
        want = reference_expert(tensors, layout.architecture, layout.decoder_layers[layer], e, x)
        torch.testing.assert_close(y, want, **tolerance)


@pytest.fixture(scope="module")
def packed(tiny_checkpoint, tmp_path_factory):
    made = {}

    def build(arch):
        if arch not in made:
            made[arch] = tmp_path_factory.mktemp("packed") / arch
            pack_checkpoint(tiny_checkpoint(arch), made[arch])
        return made[arch]

    return build


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe", "olmoe", "gpt_oss", "deepseek_v3"])
@pytest.mark.parametrize("layout", ["model", "packed"])
def test_every_expert_output_equals_the_checkpoint_reference(arch, layout, tiny_checkpoint, packed, routed_trace):
    source = tiny_checkpoint(arch)
    weights = source if layout == "model" else packed(arch)
    trace = routed_trace(source)
    config = SimConfig(policy="lru", hardware=PRESET, vram_experts=3, ram_experts=6, prefetch="lookahead")
    done = replay(trace, weights, config, EngineOptions(capture=True, audit=True, threads=3))
    assert_outputs_match(done, trace, source, rtol=1e-5, atol=1e-6)
    executor = done.executor
    assert not overlaps(executor.vram.log) and not overlaps(executor.ram.log)


@pytest.mark.parametrize("like", ["olmoe-1b-7b", "gpt-oss-20b"])
def test_like_checkpoint_outputs_equal_the_reference(like, routed_trace, tmp_path):
    """A `--like` checkpoint (bfloat16, the model's own tensor names), shrunk to test size."""
    from engine.like_checkpoint import write_like_checkpoint
    from tests.test_engine_cli import small_spec

    folder, _ = write_like_checkpoint(tmp_path / like, small_spec(like, dtype="bfloat16", expert_bias_params=0), 3)
    trace = routed_trace(folder)
    config = SimConfig(policy="lfu", hardware=PRESET, vram_experts=3, ram_experts=5, prefetch="transitions")
    done = replay(trace, folder, config, EngineOptions(capture=True, audit=True))
    assert all(y.dtype == torch.bfloat16 for y in done.executor.captured.values())
    # bfloat16 keeps 8 bits: the reference multiplies in another order, so allow a few units in the last place
    # of outputs of about 1e-2
    assert_outputs_match(done, trace, folder, rtol=1.6e-2, atol=5e-4)

CONFIGS = {
    "one tier, global": dict(vram_experts=6, ram_experts=0),
    "two tiers, per layer": dict(per_layer=True, vram_experts=2, ram_experts=4),
    "two tiers, global, transitions": dict(vram_experts=6, ram_experts=12, prefetch="transitions"),
    "two tiers, per layer, lookahead": dict(per_layer=True, vram_experts=3, ram_experts=5, prefetch="lookahead"),
    "exclusive, affinity prefetch": dict(vram_experts=5, ram_experts=6, inclusive=False, prefetch="affinity"),
    "cpu-compute": dict(vram_experts=5, ram_experts=10, cpu_compute=True, prefetch="lookahead"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("policy", list(REGISTRY))
def test_replay_counters_equal_simulate(policy, name, tiny_checkpoint, routed_trace):
    checkpoint = tiny_checkpoint("mixtral")
    trace = routed_trace(checkpoint, seed=1)
    config = SimConfig(policy=policy, hardware=PRESET, **CONFIGS[name])
    done = replay(trace, checkpoint, config, EngineOptions(audit=True, threads=2))
    assert done.result == simulate(trace, config)  # every counter, byte and predicted time
    executor = done.executor
    assert 0 < executor.peak["vram"] <= executor.vram.capacity
    assert executor.peak["ram"] <= executor.ram.capacity
    assert not overlaps(executor.vram.log) and not overlaps(executor.ram.log)
    moved = done.measured
    assert moved["measured_bytes_nvme_to_ram"] == done.result.bytes_nvme_to_ram
    assert moved["measured_bytes_ram_to_vram"] == done.result.bytes_ram_to_vram
    assert moved["measured_bytes_vram_to_ram"] == done.result.bytes_vram_to_ram
    assert moved["measured_steps"] == done.result.steps


def test_overlap_audit_finds_a_write_during_a_read():
    log = [(3, "w", 7, 0.0, 2.0), (3, "r", 7, 2.5, 3.0), (4, "r", 1, 1.0, 1.5)]
    assert overlaps(log) == []
    log.append((3, "r", 9, 1.5, 2.2))
    assert len(overlaps(log)) == 1


def test_audit_catches_slots_that_drift_from_the_planner(tiny_checkpoint, routed_trace, monkeypatch):
    """Planted fault: a released slot goes back to the free list but its expert stays listed as resident."""
    from engine import tiers

    def leaky(self, obj):
        self.free.append(self.slot_of[obj])
        return self.slot_of[obj]

    monkeypatch.setattr(tiers.SlotTier, "release", leaky)
    checkpoint = tiny_checkpoint("mixtral")
    config = SimConfig(policy="lru", hardware=PRESET, vram_experts=4, ram_experts=8)
    with pytest.raises(AssertionError, match="vram slots hold"):
        replay(routed_trace(checkpoint), checkpoint, config, EngineOptions(audit=True))
