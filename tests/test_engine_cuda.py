"""The engine on a GPU: outputs, counters, and transfers on their own stream overlapping compute.
Skipped without CUDA; run on a GPU machine whenever one is at hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.executor import EngineOptions
from engine.layout import open_layout
from engine.replay import replay
from simulator.hardware import load_hardware
from simulator.replay import SimConfig, simulate
from tests.test_engine_replay import assert_outputs_match

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
PRESET = load_hardware("h100-pcie5")


@pytest.mark.parametrize("arch", ["mixtral", "gpt_oss"])
def test_outputs_on_the_gpu_equal_the_checkpoint_reference(arch, tiny_checkpoint, routed_trace):
    source = tiny_checkpoint(arch)
    trace = routed_trace(source)
    config = SimConfig(policy="lru", hardware=PRESET, vram_experts=3, ram_experts=6, prefetch="lookahead")
    done = replay(trace, source, config, EngineOptions(device="cuda", capture=True, audit=True))
    assert_outputs_match(done, trace, source, rtol=1e-4, atol=1e-5)

def test_batched_decode_equals_the_per_expert_loop(tiny_checkpoint, routed_trace):
    """The gathered bmm path (capture off) gives the same step outputs as the loop (capture on)."""
    source = tiny_checkpoint("qwen3_moe")
    trace = routed_trace(source)
    config = SimConfig(policy="lru", hardware=PRESET, vram_experts=64, ram_experts=64)
    outs = []
    for capture in (False, True):
        done = replay(trace, source, config, EngineOptions(device="cuda", capture=capture))
        outs.append(done.executor.out.cpu())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(vram_experts=4, ram_experts=8, prefetch="transitions"),
                                dict(vram_experts=5, ram_experts=6, inclusive=False),
                                dict(per_layer=True, vram_experts=2, ram_experts=4, cpu_compute=True)])
def test_gpu_counters_equal_simulate(kw, tiny_checkpoint, routed_trace):
    source = tiny_checkpoint("mixtral")
    trace = routed_trace(source, seed=2)
    config = SimConfig(policy="watermark", hardware=PRESET, **kw)
    done = replay(trace, source, config, EngineOptions(device="cuda", audit=True))
    assert done.result == simulate(trace, config)
    assert done.measured["measured_device"] == "cuda" and done.measured["measured_time_per_token_s"] > 0


def test_copies_on_their_stream_overlap_compute(tiny_checkpoint):
    """A RAM -> VRAM copy issued by the executor runs while the compute stream is busy."""
    from engine.executor import Executor

    source = tiny_checkpoint("mixtral")
    layout = open_layout(source)

    class Planner:
        in_ram = np.ones(layout.num_objects, bool)
        in_vram = np.zeros(layout.num_objects, bool)

    ex = Executor(layout, Planner(), 4, 4, 2, EngineOptions(device="cuda"))
    big = torch.randn(4096, 4096, device="cuda")
    n_bytes = ex.ram.arena.shape[1]
    for obj in range(4):
        ex.ram.take(obj)
    torch.cuda.synchronize()
    start, busy_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        big = big @ big / 4096  # keeps the compute stream busy for milliseconds
    busy_end.record()
    for obj in range(4):
        ex._copy_up(ex.ram.slot_of[obj], ex.vram.take(obj), obj, demand=False)
    copy_end = ex.copy_stream.record_event(torch.cuda.Event(enable_timing=True))
    torch.cuda.synchronize()
    assert start.elapsed_time(copy_end) < start.elapsed_time(busy_end), \
        f"copies of {4 * n_bytes} B waited for compute"
    ex.close()


def test_staged_arrays_arrive_intact_when_the_ring_wraps():
    """More arrays than the pinned ring has buffers, queued behind GPU work: none is overwritten before its copy."""
    from engine.staging import ENTRIES, PinnedStaging

    staging = PinnedStaging(torch.device("cuda"))
    big = torch.randn(4096, 4096, device="cuda")
    for _ in range(10):
        big = big @ big / 4096  # queued work ahead of the copies
    arrays = [np.arange(i, i + 3 + i % 5, dtype=np.int64 if i % 2 else np.float32) for i in range(3 * ENTRIES)]
    sent = [staging.to_device(a) for a in arrays]
    torch.cuda.synchronize()
    for a, t in zip(arrays, sent):
        np.testing.assert_array_equal(t.cpu().numpy(), a)
