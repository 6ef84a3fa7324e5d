"""Find the MoE routers of a transformers model and capture their decisions as they happen.

transformers (5.x) gives every supported MoE architecture a router module whose forward returns
`(router_logits, routing_weights, expert_indices)`: Mixtral, Qwen2/3-MoE, OLMoE, GPT-OSS and
DeepSeek-V2/V3 alike. Hooking that module records exactly what the model chose, with its own
top-k, grouping and weight normalisation, with no per-architecture re-implementation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

_LAYER_INDEX = re.compile(r"layers\.(\d+)\.")


@dataclass
class Router:
    """One MoE layer's router: its decoder layer index, module and experts module."""

    decoder_layer: int
    name: str
    module: nn.Module
    experts: nn.Module | None

    @property
    def num_experts(self) -> int:
        return int(self.module.num_experts)

    @property
    def top_k(self) -> int:
        return int(self.module.top_k)

    def expert_bytes(self) -> int:
        """Bytes of one routed expert (its share of the experts module's parameters)."""
        if self.experts is None:
            return 1
        total = sum(p.numel() * p.element_size() for p in self.experts.parameters())
        return max(1, total // self.num_experts)


def is_router(module: nn.Module) -> bool:
    return type(module).__name__.lower().endswith("topkrouter") and hasattr(module, "top_k")


def find_routers(model: nn.Module) -> list[Router]:
    """The model's MoE routers in execution (decoder layer) order."""
    found = []
    for name, module in model.named_modules():
        if not is_router(module):
            continue
        match = _LAYER_INDEX.search(name + ".")
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        found.append(Router(int(match.group(1)) if match else len(found), name, module,
                            getattr(parent, "experts", None)))
    return sorted(found, key=lambda r: r.decoder_layer)


@dataclass
class Routing:
    """What one router decided for the T tokens of one forward pass."""

    layer: int  # MoE layer index
    inputs: torch.Tensor  # (T, H) the router's input, kept for lookahead
    logits: torch.Tensor  # (T, E) float32
    experts: torch.Tensor  # (T, K) int64, by descending weight
    weights: torch.Tensor  # (T, K) float32


def ordered(weights: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each token's choices by descending weight (DeepSeek's top-k is unsorted)."""
    order = torch.argsort(weights, dim=-1, descending=True, stable=True)
    return torch.gather(indices, -1, order), torch.gather(weights, -1, order)


class RoutingTap:
    """Forward hooks on every router; `drain()` returns what fired since the last call."""

    def __init__(self, routers: list[Router]) -> None:
        self.routers = routers
        self._captured: list[Routing] = []
        self._handles = [r.module.register_forward_hook(self._hook(i)) for i, r in enumerate(routers)]

    def _hook(self, layer: int):
        def capture(module: nn.Module, args: tuple, output: tuple) -> None:
            logits, weights, indices = output[0], output[1], output[2]
            hidden = args[0].reshape(-1, args[0].shape[-1]).detach()
            experts, weights = ordered(weights.detach().float(), indices.detach())
            self._captured.append(Routing(layer, hidden, logits.detach().float(), experts, weights))

        return capture

    def drain(self) -> list[Routing]:
        captured, self._captured = self._captured, []
        return captured

    def lookahead(self, routing: Routing) -> torch.Tensor | None:
        """The next MoE layer's router applied to this layer's input: (T, K) expert ids, or None
        for the last layer. The hooks are bypassed by calling the router's forward directly."""
        nxt = routing.layer + 1
        if nxt >= len(self.routers):
            return None
        module = self.routers[nxt].module
        weight = module.weight
        _, weights, indices = module.forward(routing.inputs.to(weight.device, weight.dtype))
        experts, _ = ordered(weights.float(), indices)
        return experts

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
