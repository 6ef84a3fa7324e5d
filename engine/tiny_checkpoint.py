"""Small random-weight Hugging Face checkpoints of every supported MoE architecture.

They let tests, the demo and benchmarks run `record` end to end with no download: the real
transformers model classes, real safetensors files and a real (byte-level) tokenizer, only with
few layers, narrow widths and random weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from traces.atomic import atomic_folder
from traces.errors import MoecacheError
from traces.model_specs import ARCHITECTURES

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>")
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def _moe_fields(arch: str, experts: int, top_k: int, hidden: int) -> dict:
    """Per-architecture names for the expert count, top-k and expert width."""
    inter = hidden * 2
    if arch in ("mixtral", "gpt_oss"):
        return {"num_local_experts": experts, "num_experts_per_tok": top_k, "intermediate_size": inter}
    if arch in ("qwen2_moe", "qwen3_moe"):
        fields = {"num_experts": experts, "num_experts_per_tok": top_k, "moe_intermediate_size": inter,
                  "intermediate_size": inter * 2, "norm_topk_prob": arch == "qwen3_moe", "decoder_sparse_step": 1}
        if arch == "qwen2_moe":
            fields["shared_expert_intermediate_size"] = inter
        return fields
    if arch == "olmoe":
        return {"num_experts": experts, "num_experts_per_tok": top_k, "intermediate_size": inter}
    if arch in ("deepseek_v2", "deepseek_v3"):
        fields = {"n_routed_experts": experts, "num_experts_per_tok": top_k, "moe_intermediate_size": inter,
                  "intermediate_size": inter * 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
                  "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
                  "v_head_dim": 16, "head_dim": 8, "n_group": 2, "topk_group": 1, "routed_scaling_factor": 1.0}
        if arch == "deepseek_v2":
            fields["topk_method"] = "group_limited_greedy"
        else:
            fields["norm_topk_prob"] = True
        return fields
    raise MoecacheError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")


def tiny_config(arch: str, *, layers: int = 4, experts: int = 8, top_k: int = 2, hidden: int = 64,
                **overrides: object) -> PretrainedConfig:
    """A config of `arch` small enough to run on a CPU in milliseconds per token."""
    fields = dict(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=256, eos_token_id=257, pad_token_id=258,
    )
    fields.update(_moe_fields(arch, experts, top_k, hidden))
    if arch == "gpt_oss":
        fields.update(head_dim=16, layer_types=["sliding_attention", "full_attention"] * (layers // 2)
                      + ["sliding_attention"] * (layers % 2), sliding_window=128, max_position_embeddings=131072)
    fields.update(overrides)
    return AutoConfig.for_model(arch, **fields)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (one token per UTF-8 byte) built locally, with no vocabulary file."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab.update({tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def write_tiny_checkpoint(out_dir: Path, arch: str = "mixtral", *, seed: int = 0, dtype: torch.dtype = torch.float32,
                          config: PretrainedConfig | None = None, **sizes: int) -> Path:
    """Write a random-weight checkpoint (config.json, safetensors, tokenizer) to `out_dir`."""
    config = config or tiny_config(arch, **sizes)
    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        byte_tokenizer().save_pretrained(tmp)
    return out_dir
