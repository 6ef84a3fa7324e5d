"""Model specs: the routed-expert geometry of a named MoE model, read from `data/models/*.toml`.

A spec sizes experts for the cache model and gives foreign routing logs (which carry no metadata)
their layers, experts and bytes. Every spec checks that its bytes per expert follow from its
dimensions and dtype, so a typo in a TOML file cannot silently mis-size a cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from traces.data_files import available, read_record
from traces.errors import MoecacheError
from traces.schema import TraceMeta

BITS_PER_PARAM = {"float32": 32.0, "bfloat16": 16.0, "float16": 16.0, "float8": 8.0, "int8": 8.0, "mxfp4": 4.25}
ARCHITECTURES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "deepseek_v2", "deepseek_v3")
BIAS_BYTES = 2  # biases stay in bf16 even where the matrices are quantized


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    hf_id: str
    num_layers: int
    num_experts: int
    top_k: int
    hidden_size: int
    expert_intermediate_size: int
    dtype: str
    bytes_per_expert: int
    shared_experts: int = 0
    expert_matrices: int = 3
    expert_bias_params: int = 0
    dense_layers_first: int = 0
    sources: dict[str, str] = field(default_factory=dict)

    def derived_bytes(self) -> int:
        params = self.expert_matrices * self.hidden_size * self.expert_intermediate_size
        return round(params * BITS_PER_PARAM[self.dtype] / 8) + self.expert_bias_params * BIAS_BYTES

    def trace_meta(self, **overrides: object) -> TraceMeta:
        """Trace metadata for routing produced by this model."""
        values: dict[str, object] = dict(
            model=self.name,
            architecture=self.architecture,
            num_layers=self.num_layers,
            num_experts=self.num_experts,
            top_k=self.top_k,
            bytes_per_expert=(self.bytes_per_expert,),
            dtype=self.dtype,
            shared_experts=self.shared_experts,
            moe_layer_ids=tuple(range(self.dense_layers_first, self.dense_layers_first + self.num_layers)),
        )
        values.update(overrides)
        return TraceMeta(**values)  # type: ignore[arg-type]


def available_specs() -> list[str]:
    return available("models")


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """A spec by shipped name (`mixtral-8x7b`) or by the path of a TOML file of the same form."""
    path, spec = read_record(name_or_path, "models", "model spec", ModelSpec)
    if spec.dtype not in BITS_PER_PARAM:
        raise MoecacheError(f"{path}: dtype '{spec.dtype}' unknown; use one of {', '.join(BITS_PER_PARAM)}")
    if spec.derived_bytes() != spec.bytes_per_expert:
        raise MoecacheError(
            f"{path}: bytes_per_expert = {spec.bytes_per_expert} but the dimensions give "
            f"{spec.derived_bytes()}; fix one of them"
        )
    return spec
