"""Expert FFNs computed straight from cache slots: the architecture's own arithmetic, batched per layer.

A slot is raw bytes; `slot_views` gives each slot's typed weight views once, so the hot path builds
no tensors from bytes. Standard experts are SwiGLU as transformers' eager loop computes them
(`F.linear(x, gate_up).chunk(2)`, silu(gate) * up, `F.linear(., down)`); GPT-OSS's experts add
biases and the clamped GLU (gate <= limit, |up| <= limit, gate * sigmoid(1.702 gate) * (up + 1)).

A decode step's k experts all see the same token, so on a GPU they are computed together: one
`index_select` gathers their slots into a preallocated buffer and two `bmm`s replace 3k launches
(the per-expert loop is launch-bound for small experts). Experts larger than GATHER_LIMIT and
prefill steps use the per-expert loop over slot views, which copies nothing.

Legend: S slots, k experts of the step, T tokens, H hidden, I expert intermediate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.layout import SlotFormat

GPT_OSS_ALPHA = 1.702
GATHER_LIMIT = 64 << 20


def slot_views(arena: torch.Tensor, fmt: SlotFormat) -> list[dict[str, torch.Tensor]]:
    """Typed views of each slot's parts; arena is (S, slot_bytes) uint8."""
    dtype = getattr(torch, fmt.dtype)
    out = []
    for s in range(arena.shape[0]):
        row = arena[s]
        out.append({p.name: row[p.offset:p.offset + p.nbytes].view(dtype).view(p.shape) for p in fmt.parts})
    return out


def expert_ffn(x: torch.Tensor, w: dict[str, torch.Tensor], fmt: SlotFormat, limit: float) -> torch.Tensor:
    """One expert on x (T, H) -> (T, H)."""
    if fmt.kind == "swiglu":
        gate, up = F.linear(x, w["gate_up"]).chunk(2, dim=-1)  # (T, I) each
        return F.linear(F.silu(gate) * up, w["down"])
    gate_up = x @ w["gate_up"] + w["gate_up_bias"]  # (T, 2I), gate/up interleaved
    gate = gate_up[..., ::2].clamp(max=limit)
    up = gate_up[..., 1::2].clamp(min=-limit, max=limit)
    glu = gate * torch.sigmoid(gate * GPT_OSS_ALPHA)
    return ((up + 1) * glu) @ w["down"] + w["down_bias"]


class BatchedDecode:
    """A decode step's experts from one gather and two bmm's; buffers allocated once."""

    def __init__(self, arena: torch.Tensor, fmt: SlotFormat, max_k: int, limit: float) -> None:
        self.fmt, self.limit = fmt, limit
        dtype = getattr(torch, fmt.dtype)
        self.rows = arena.view(dtype)  # (S, slot_bytes / item)
        self.buf = torch.empty((max_k, self.rows.shape[1]), dtype=dtype, device=arena.device)
        item = self.rows.element_size()
        self.parts = {p.name: (p.offset // item, p.nbytes // item, p.shape) for p in fmt.parts}

    def _part(self, k: int, name: str) -> torch.Tensor:
        start, n, shape = self.parts[name]
        return self.buf[:k, start:start + n].view(k, *shape)

    def __call__(self, slots: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """slots (k,) int64 on the device, x (1, H), weights (k,) -> (1, H), the weighted sum."""
        k = slots.shape[0]
        torch.index_select(self.rows, 0, slots, out=self.buf[:k])
        xs = x.expand(k, -1).unsqueeze(-1)  # (k, H, 1)
        if self.fmt.kind == "swiglu":
            gate, up = torch.bmm(self._part(k, "gate_up"), xs).chunk(2, dim=1)  # (k, I, 1) each
            y = torch.bmm(self._part(k, "down"), F.silu(gate) * up)  # (k, H, 1)
        else:
            gate_up = torch.bmm(self._part(k, "gate_up").transpose(1, 2), xs)[..., 0] + self._part(k, "gate_up_bias")
            gate = gate_up[..., ::2].clamp(max=self.limit)
            up = gate_up[..., 1::2].clamp(min=-self.limit, max=self.limit)
            act = ((up + 1) * gate * torch.sigmoid(gate * GPT_OSS_ALPHA)).unsqueeze(-1)  # (k, I, 1)
            y = torch.bmm(self._part(k, "down").transpose(1, 2), act) + self._part(k, "down_bias").unsqueeze(-1)
        return (y[..., 0] * weights.to(y.dtype).unsqueeze(-1)).sum(0, keepdim=True)
