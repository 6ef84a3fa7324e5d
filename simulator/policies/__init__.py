"""The policy registry: one line per policy. The CLI choices, the kernel and the tests read it."""

from __future__ import annotations

import dataclasses

from simulator.policies.affinity import Affinity
from simulator.policies.base import NoParams, Policy, TierView
from simulator.policies.belady import Belady
from simulator.policies.fifo import FIFO
from simulator.policies.layer_lru import LayerLRU
from simulator.policies.lfu import LFU
from simulator.policies.lru import LRU
from simulator.policies.watermark import WatermarkCredit
from traces.errors import MoecacheError

REGISTRY: dict[str, type[Policy]] = {cls.name: cls for cls in (LRU, FIFO, LFU, Belady, Affinity, LayerLRU,
                                                                 WatermarkCredit)}


def policy_class(name: str) -> type[Policy]:
    if name not in REGISTRY:
        raise MoecacheError(f"unknown policy '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make_params(name: str, overrides: dict[str, object] | None = None) -> object:
    """The policy's parameters: defaults, with `overrides` (from --param or a config file) applied."""
    cls = policy_class(name)
    overrides = dict(overrides or {})
    known = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise MoecacheError(f"policy '{name}' has no parameter {', '.join(unknown)}; its parameters: {allowed}")
    typed = {}
    for key, value in overrides.items():
        kind = int if known[key].type in ("int", int) else float
        try:
            typed[key] = kind(value)
        except (TypeError, ValueError):
            raise MoecacheError(f"policy parameter {key}={value!r} must be a number") from None
    return cls.Params(**typed).validate()


def build_policy(name: str, params: object, tier: TierView) -> Policy:
    return policy_class(name)(params, tier)


__all__ = ["REGISTRY", "NoParams", "Policy", "TierView", "build_policy", "make_params", "policy_class"]
