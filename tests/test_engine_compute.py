"""The batched decode path (one gather, two bmm's) against the per-expert loop over slot views: the GPU's
fast path, checked on the CPU too."""

from __future__ import annotations

import pytest
import torch

from engine.compute import BatchedDecode, expert_ffn, slot_views
from engine.layout import slot_format


@pytest.mark.parametrize("kind", ["swiglu", "gpt_oss"])
def test_batched_decode_equals_the_loop(kind):
    fmt = slot_format(kind, "float32", hidden=48, intermediate=40)
    generator = torch.Generator().manual_seed(0)
    arena = torch.zeros((7, fmt.slot_bytes), dtype=torch.uint8)
    for view in slot_views(arena, fmt):
        for part in view.values():
            part.copy_(torch.randn(part.shape, generator=generator) * 0.3)
    views = slot_views(arena, fmt)
    x = torch.randn(1, 48, generator=generator)
    slots = torch.tensor([5, 1, 3])
    weights = torch.tensor([0.5, 0.3, 0.2])
    want = sum(w * expert_ffn(x, views[int(s)], fmt, 7.0) for s, w in zip(slots, weights))
    got = BatchedDecode(arena, fmt, max_k=4, limit=7.0)(slots, x, weights)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.abs().max() > 0.1  # the experts really compute something


def test_gpt_oss_clamps_the_gate_and_up_halves():
    fmt = slot_format("gpt_oss", "float32", hidden=4, intermediate=2)
    arena = torch.zeros((1, fmt.slot_bytes), dtype=torch.uint8)
    w = slot_views(arena, fmt)[0]
    w["gate_up"].copy_(torch.eye(4))  # gate_up columns: gate0, up0, gate1, up1 <- x0..x3
    w["down"].copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    x = torch.tensor([[100.0, 100.0, 1.0, -100.0]])
    y = expert_ffn(x, w, fmt, limit=7.0)
    sig = torch.sigmoid(torch.tensor(7.0 * 1.702))
    # expert 0 of the intermediate: gate clamped to 7, up clamped to 7 -> (7 + 1) * 7 * sigmoid(1.702 * 7)
    # expert 1: gate 1, up clamped to -7 -> (-7 + 1) * 1 * sigmoid(1.702)
    want = torch.tensor([[8 * 7 * sig, -6 * torch.sigmoid(torch.tensor(1.702)), 0, 0]])
    torch.testing.assert_close(y, want)
