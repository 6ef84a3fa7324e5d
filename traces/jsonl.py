"""Reading JSON Lines routing logs: one object per line, and the checks every row's choice must pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from traces.errors import MoecacheError
from traces.model_specs import ModelSpec


def json_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, object) for each non-blank line; one clear line naming the line if it is not a JSON object."""
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MoecacheError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise MoecacheError(f"{where}: expected a JSON object per line")
            yield where, item


def check_choice(experts: object, weights: object, spec: ModelSpec, names: tuple[str, str],
                 where: str) -> tuple[list[int], list[float]]:
    """A row's expert ids and weights: top-k of each, ids within the model's experts, weights numbers."""
    if not isinstance(experts, list) or len(experts) != spec.top_k or not all(
            isinstance(e, int) and not isinstance(e, bool) and 0 <= e < spec.num_experts for e in experts):
        raise MoecacheError(f"{where}: {names[0]} {experts!r} must be {spec.top_k} ids in 0..{spec.num_experts - 1} "
                            f"(model spec {spec.name})")
    if not isinstance(weights, list) or len(weights) != spec.top_k or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise MoecacheError(f"{where}: {names[1]} must hold {spec.top_k} numbers")
    return experts, [float(w) for w in weights]
