"""`moecache checkpoint tiny --like MODEL`: a loadable checkpoint whose experts have a real model's size.

The dimensions come from a model spec (hidden, expert intermediate, experts, top-k, dtype), the
layer count from the user. The model class is built on the meta device only to list its tensors;
the file is then written tensor by tensor with the names the model's own checkpoints use
(per-expert `experts.N.*` tensors, Mixtral's `block_sparse_moe`, GPT-OSS's fused tensors), so
gigabytes of experts need the memory of one tensor. Random values come from one seeded pool read
at random offsets, which is as random as the engine needs and as fast as the disk.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig
from transformers.utils import logging as hf_logging

from engine.safetensors_io import CODES, TensorSpec, write_streaming
from engine.tiny_checkpoint import byte_tokenizer, tiny_config
from traces.atomic import atomic_folder
from traces.errors import MoecacheError
from traces.model_specs import ModelSpec

SHARD_BYTES = 4 << 30
POOL_ELEMENTS = 1 << 22
INTERMEDIATE_FIELD = {"mixtral": "intermediate_size", "gpt_oss": "intermediate_size", "olmoe": "intermediate_size"}
EXPERT_NAMES = {"mixtral": ("w1", "w3", "w2")}


def like_config(spec: ModelSpec, layers: int) -> tuple[PretrainedConfig, torch.dtype]:
    """A config of the spec's architecture with its expert geometry and `layers` decoder layers.
    MXFP4 specs are written in bfloat16 (the engine reads float experts)."""
    dtype = torch.bfloat16 if spec.dtype in ("mxfp4", "float8", "int8") else getattr(torch, spec.dtype)
    fields = {INTERMEDIATE_FIELD.get(spec.architecture, "moe_intermediate_size"): spec.expert_intermediate_size}
    config = tiny_config(spec.architecture, layers=layers, experts=spec.num_experts, top_k=spec.top_k,
                         hidden=spec.hidden_size, **fields)
    config.dtype = str(dtype).removeprefix("torch.")
    return config, dtype


def tensor_specs(config: PretrainedConfig, dtype: torch.dtype) -> list[TensorSpec]:
    """Every tensor of the model as its checkpoints name and shape it, experts one by one."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    arch = config.model_type
    gate, up, down = EXPERT_NAMES.get(arch, ("gate_proj", "up_proj", "down_proj"))
    out: list[TensorSpec] = []
    for name, tensor in model.state_dict().items():
        code = CODES[str(tensor.dtype).removeprefix("torch.")]
        if arch != "gpt_oss" and name.endswith(".mlp.experts.gate_up_proj"):
            experts, two_i, hidden = tensor.shape
            prefix = name.removesuffix("gate_up_proj")
            if arch == "mixtral":
                prefix = prefix.replace(".mlp.", ".block_sparse_moe.")
            for e in range(experts):
                for part, shape in ((gate, (two_i // 2, hidden)), (up, (two_i // 2, hidden)),
                                    (down, (hidden, two_i // 2))):
                    out.append(TensorSpec(f"{prefix}{e}.{part}.weight", code, shape))
        elif arch != "gpt_oss" and name.endswith(".mlp.experts.down_proj"):
            continue  # written with gate and up above
        else:
            if arch == "mixtral":
                name = name.replace(".mlp.gate.", ".block_sparse_moe.gate.")
            out.append(TensorSpec(name, code, tuple(tensor.shape)))
    return out


def shards(specs: list[TensorSpec]) -> list[list[TensorSpec]]:
    groups: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if groups[-1] and size + spec.nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(spec)
        size += spec.nbytes
    return groups


class RandomBytes:
    """Tensor bytes drawn from one seeded pool of N(0, 0.02) values at random offsets; norms are ones."""

    def __init__(self, dtype: torch.dtype, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        pool = (torch.randn(POOL_ELEMENTS, generator=generator) * 0.02).to(dtype)
        self.item = pool.element_size()
        self.pool = np.frombuffer(pool.view(torch.uint8).numpy().tobytes() * 2, np.uint8)
        self.one = torch.ones(1, dtype=dtype).view(torch.uint8).numpy().tobytes()
        self.rng = np.random.default_rng(seed)

    def __call__(self, spec: TensorSpec) -> bytes | memoryview:
        if len(spec.shape) == 1 and spec.name.endswith("norm.weight"):
            return self.one * (spec.nbytes // self.item)
        half = len(self.pool) // 2
        if spec.nbytes <= half:
            start = int(self.rng.integers(0, half // self.item)) * self.item
            return memoryview(self.pool[start:start + spec.nbytes])
        reps = -(-spec.nbytes // half)
        return np.tile(self.pool[:half], reps)[:spec.nbytes].data


def write_like_checkpoint(out_dir: Path, spec: ModelSpec, layers: int, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> tuple[Path, int]:
    """Write the checkpoint; returns (folder, bytes written). Checks free disk space first."""
    out_dir = Path(out_dir)
    hf_logging.disable_progress_bar()
    config, dtype = like_config(spec, layers)
    specs = tensor_specs(config, dtype)
    total = sum(s.nbytes for s in specs)
    check_free_space(out_dir, total)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    with atomic_folder(out_dir) as tmp:
        config.save_pretrained(tmp)
        byte_tokenizer().save_pretrained(tmp)
        produce = RandomBytes(dtype, seed)
        groups = shards(specs)
        weight_map = {}
        for i, group in enumerate(groups):
            name = "model.safetensors" if len(groups) == 1 else f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            write_streaming(tmp / name, group, produce, advance)
            weight_map.update({s.name: name for s in group})
        if len(groups) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return out_dir, total


def check_free_space(out_dir: Path, nbytes: int) -> None:
    """One clear line when the folder's disk cannot hold `nbytes` (plus 1% and 64 MiB of slack)."""
    parent = out_dir if out_dir.exists() else out_dir.parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    need = int(nbytes * 1.01) + (64 << 20)
    if free < need:
        raise MoecacheError(f"{out_dir}: needs {need / 2**30:.2f} GiB but {parent} has {free / 2**30:.2f} GiB free; "
                            "use fewer --layers or another folder")
