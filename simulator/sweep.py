"""The capacities a sweep runs at: ranges as users write them, resolved to bytes for each trace's model.

A range is `START:STOP:COUNT` (COUNT values evenly spaced from START to STOP, both included), a
comma list, or one value. Capacities come in three kinds, for the three ways people think of a budget:
- `bytes`: sizes such as 4GiB (`--vram 1GiB:16GiB:8`);
- `fraction`: a share of all the model's routed experts (`--vram-fraction 0.05:0.5:10`);
- `active`: multiples of one token's active experts, top-k in every layer (`--vram-active 1:4:8`;
  moe-lrc's knee sits near 2x active).
Ranges must rise, and every capacity must hold one step's experts, or the sweep is refused before
any run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.config import SimConfig
from traces.errors import MoecacheError
from traces.reader import Trace
from traces.schema import TraceMeta
from traces.sizes import parse_size

KINDS = ("bytes", "fraction", "active")


@dataclass(frozen=True)
class Capacities:
    """A sweep's capacities of one tier: their kind and values (bytes, fractions or multiples), rising."""

    kind: str
    values: tuple[float, ...]

    def bytes_for(self, meta: TraceMeta) -> list[int]:
        """The capacities in bytes for the trace's model."""
        every = sum(meta.expert_bytes(layer) * meta.num_experts for layer in range(meta.num_layers))
        active = sum(meta.expert_bytes(layer) * meta.top_k for layer in range(meta.num_layers))
        scale = {"bytes": 1, "fraction": every, "active": active}[self.kind]
        return [int(v * scale) for v in self.values]


def parse_capacities(text: str, kind: str, option: str) -> Capacities:
    """`START:STOP:COUNT`, `A,B,C` or `A` as Capacities of `kind`; out of order or empty ranges are errors."""
    if kind not in KINDS:
        raise ValueError(f"capacity kind {kind!r}; known: {', '.join(KINDS)}")

    def value(part: str) -> float:
        if kind == "bytes":
            return float(parse_size(part, option))
        try:
            number = float(part)
        except ValueError:
            raise MoecacheError(f"{option} {text!r}: {part!r} is not a number") from None
        if number <= 0 or (kind == "fraction" and number > 1):
            raise MoecacheError(f"{option} {text!r}: {part} is outside "
                                f"{'0 < f <= 1' if kind == 'fraction' else 'the positive numbers'}")
        return number

    if not text.strip():
        raise MoecacheError(f"{option}: the sweep is empty (no capacity given)")
    parts = text.split(":")
    if len(parts) == 3:
        start, stop = value(parts[0]), value(parts[1])
        try:
            count = int(parts[2])
        except ValueError:
            raise MoecacheError(f"{option} {text!r}: the count {parts[2]!r} is not a whole number") from None
        if count < 1:
            raise MoecacheError(f"{option} {text!r}: a range needs at least one value")
        if count > 1 and stop <= start:
            raise MoecacheError(f"{option} {text!r}: capacities out of order (START:STOP:COUNT, STOP above START)")
        values = [start + (stop - start) * i / (count - 1) for i in range(count)] if count > 1 else [start]
    elif len(parts) == 1:
        values = [value(part) for part in text.split(",")]
        if any(b <= a for a, b in zip(values, values[1:])):
            raise MoecacheError(f"{option} {text!r}: capacities out of order (list them rising)")
    else:
        raise MoecacheError(f"{option} {text!r}: expected START:STOP:COUNT, a comma list, or one value")
    return Capacities(kind, tuple(values))


def check_holds_one_step(capacities: Capacities, meta: TraceMeta, option: str, per_layer: bool) -> list[int]:
    """The capacities in bytes, refusing any below one step's experts (top-k of the largest layer's experts,
    in every layer's share when the cache is per layer)."""
    largest = max(meta.expert_bytes(layer) for layer in range(meta.num_layers))
    step = meta.top_k * largest * (meta.num_layers if per_layer else 1)
    resolved = capacities.bytes_for(meta)
    for value, nbytes in zip(capacities.values, resolved):
        if nbytes < step:
            shown = f"{value:g}" if capacities.kind != "bytes" else f"{nbytes:,} B"
            raise MoecacheError(f"{option} {shown}: {nbytes:,} bytes cannot hold one step's experts of {meta.model} "
                                f"({step:,} bytes: top-{meta.top_k} x {largest:,} B"
                                f"{f' in each of {meta.num_layers} layers' if per_layer else ''})")
    return resolved


def check_sweep(trace: Trace, configs: list[SimConfig], option: str, capacities: Capacities) -> None:
    """Every run of a trace checked before any starts: capacities that hold a step, and each configuration as
    `simulate` checks it (prefetcher columns, inclusive RAM at least VRAM, ...)."""
    from simulator.config import resolve
    from simulator.hardware import expert_sizes
    from simulator.replay import check

    if not configs:
        raise MoecacheError("the sweep is empty: no policy, prefetcher or capacity to run")
    check_holds_one_step(capacities, trace.meta, option, configs[0].per_layer)
    for config in configs:
        check(config, trace)
        resolve(config, trace, expert_sizes(trace.meta, config.precision))
