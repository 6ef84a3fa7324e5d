"""The policy registry: one line per policy. The CLI choices, the kernel and the tests read it.

A policy is one file: its reference class (the hooks of `base.Policy`) and its fast rules for the
numba kernel (`fast.register`), checked against each other event for event by the tests."""

from __future__ import annotations

import dataclasses
import importlib

from simulator.policies.base import NoParams, Policy, TierView
from traces.errors import MoecacheError

REGISTRY: dict[str, str] = {  # name: module.Class, imported when first used (so the CLI starts without numba)
    "lru": "lru.LRU",
    "fifo": "fifo.FIFO",
    "lfu": "lfu.LFU",
    "belady": "belady.Belady",
    "affinity": "affinity.Affinity",
    "layer-lru": "layer_lru.LayerLRU",
    "watermark": "watermark.WatermarkCredit",
    "s3fifo": "s3fifo.S3FIFO",
    "arc": "arc.ARC",
}


def policy_class(name: str) -> type[Policy]:
    if name not in REGISTRY:
        raise MoecacheError(f"unknown policy '{name}'; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(".")
    return getattr(importlib.import_module(f"simulator.policies.{module}"), cls)


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
