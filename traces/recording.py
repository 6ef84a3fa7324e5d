"""`record`: run a local Hugging Face MoE checkpoint over prompts and write every routing decision.

Generation is plain greedy (or seeded sampling) decoding with the model's KV cache, one prompt at a
time (batch 1, the case that matters on an edge box): one prefill pass over the prompt, then one
decode pass per new token. Router hooks (`traces.routers`) capture each MoE layer's choices as the
model makes them; rows are written in execution order and flushed as row groups, so Ctrl-C leaves
a valid trace of everything recorded up to the interrupted pass.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from traces.errors import MoecacheError
from traces.routers import Router, RoutingTap, find_routers
from traces.schema import TraceMeta
from traces.version import VERSION
from traces.writer import TraceWriter

Progress = Callable[[int, int], None]  # (tokens done, tokens planned)


@dataclass
class RecordOptions:
    max_new_tokens: int = 32
    logits: bool = False
    lookahead: bool = False
    device: str = "cpu"
    dtype: str = "auto"
    temperature: float = 0.0
    seed: int = 0
    stop_at_eos: bool = True
    command: str = ""


@dataclass
class RecordResult:
    path: Path
    rows: int
    prompt_tokens: int
    decode_tokens: int
    seconds: float
    interrupted: bool
    sequences: list[list[int]] = field(default_factory=list)  # prompt + generated ids per request


def read_prompts(path: Path) -> list[str]:
    """One prompt per line, or JSON Lines with a "prompt" (or "text") field per line."""
    if not path.exists():
        raise MoecacheError(f"{path}: no such prompt file")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise MoecacheError(f"{path}: the prompt file is empty; put one prompt per line")
    if path.suffix != ".jsonl":
        return lines
    prompts = []
    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MoecacheError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        text = item.get("prompt", item.get("text")) if isinstance(item, dict) else None
        if not isinstance(text, str) or not text:
            raise MoecacheError(f'{path}:{number}: expected an object with a non-empty "prompt" string')
        prompts.append(text)
    return prompts


def load_model(checkpoint: Path, device: str, dtype: str):
    """Load model and tokenizer from a local checkpoint folder, never from the network."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if not checkpoint.is_dir():
        raise MoecacheError(f"{checkpoint}: not a folder; give a local Hugging Face checkpoint folder")
    if not (checkpoint / "config.json").exists():
        raise MoecacheError(f"{checkpoint}: not a Hugging Face checkpoint (no config.json)")
    try:
        config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise MoecacheError(f"{checkpoint}/config.json: cannot be read by transformers ({exc})") from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    if not find_routers(skeleton):
        raise MoecacheError(
            f"{checkpoint}: '{config.model_type}' is a dense model (no MoE router found); "
            "record needs a Mixture-of-Experts checkpoint such as Mixtral, Qwen-MoE, OLMoE, GPT-OSS or DeepSeek"
        )
    if not any(checkpoint.glob("*.safetensors")):
        raise MoecacheError(f"{checkpoint}: no .safetensors weights (moecache never loads pickled .bin files)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise MoecacheError(f"{checkpoint}: no usable tokenizer ({str(exc).splitlines()[0]})") from None
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint, local_files_only=True, dtype=torch_dtype, use_safetensors=True
    ).to(device)
    model.eval()
    return model, tokenizer


def trace_meta(model, routers: list[Router], checkpoint: Path, options: RecordOptions) -> TraceMeta:
    config = model.config
    per_layer = tuple(r.expert_bytes() for r in routers)
    shared = getattr(config, "n_shared_experts", None) or (1 if getattr(config, "shared_expert_intermediate_size", 0) else 0)
    return TraceMeta(
        model=checkpoint.resolve().name,
        architecture=config.model_type,
        num_layers=len(routers),
        num_experts=routers[0].num_experts,
        top_k=routers[0].top_k,
        bytes_per_expert=per_layer[:1] if len(set(per_layer)) == 1 else per_layer,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        shared_experts=int(shared),
        moe_layer_ids=tuple(r.decoder_layer for r in routers),
        tool_version=VERSION,
        command=options.command,
        source=str(checkpoint.resolve()),
    )


def record(checkpoint: Path, prompts: list[str], out: Path, options: RecordOptions,
           progress: Progress | None = None) -> RecordResult:
    """Record the routing of `prompts` through `checkpoint` into the trace `out`."""
    if not prompts or any(not p.strip() for p in prompts):
        raise MoecacheError("every prompt must be non-empty text")
    if options.max_new_tokens < 0:
        raise MoecacheError(f"--max-new-tokens must be 0 or more, got {options.max_new_tokens}")
    model, tokenizer = load_model(checkpoint, options.device, options.dtype)
    routers = find_routers(model)
    writer = TraceWriter(out, trace_meta(model, routers, checkpoint, options),
                         logits=options.logits, lookahead=options.lookahead)
    encoded = [tokenizer(p, return_tensors="pt").input_ids.to(options.device) for p in prompts]
    planned = sum(ids.shape[1] + options.max_new_tokens for ids in encoded)
    session = _Session(model, RoutingTap(routers), writer, options, tokenizer.eos_token_id, progress, planned)
    started = time.perf_counter()
    interrupted = False
    try:
        for request, ids in enumerate(encoded):
            session.generate(request, ids)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        writer.abort()
        raise
    finally:
        session.tap.remove()
    writer.close(complete=not interrupted)
    return RecordResult(out, writer.rows_written, session.prompt_tokens, session.decode_tokens,
                        time.perf_counter() - started, interrupted, session.sequences)


def _cache_of(output: object) -> object:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class _Session:
    """State of one recording: the model, the tap, the writer and the counters."""

    def __init__(self, model, tap: RoutingTap, writer: TraceWriter, options: RecordOptions,
                 eos: int | None, progress: Progress | None, planned: int) -> None:
        self.model, self.tap, self.writer, self.options = model, tap, writer, options
        self.eos, self.progress, self.planned = eos, progress, planned
        self.generator = torch.Generator(device=options.device).manual_seed(options.seed)
        self.prompt_tokens = self.decode_tokens = 0
        self.sequences: list[list[int]] = []
        # transformers renamed `past_key_values` to `cache` during 5.x; use what this model takes
        self.cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @torch.inference_mode()
    def generate(self, request: int, ids: torch.Tensor) -> None:
        """Prefill `ids` (1, P), then decode up to max_new_tokens, writing each pass's routing."""
        sequence = ids[0].tolist()
        self.sequences.append(sequence)
        out = self.model(input_ids=ids, use_cache=True)
        cache = _cache_of(out)
        self._write(request, 0, "prefill")
        self.prompt_tokens += ids.shape[1]
        self._tick()
        for _ in range(self.options.max_new_tokens):
            token = self._next_token(out.logits[0, -1])
            if self.options.stop_at_eos and token == self.eos:
                break
            position = len(sequence)
            sequence.append(token)
            step = torch.tensor([[token]], device=ids.device)
            out = self.model(input_ids=step, use_cache=True, **{self.cache_argument: cache})
            cache = _cache_of(out)
            self._write(request, position, "decode")
            self.decode_tokens += 1
            self._tick()

    def _next_token(self, logits: torch.Tensor) -> int:
        if self.options.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / self.options.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _write(self, request: int, first_position: int, phase: str) -> None:
        for routing in self.tap.drain():
            n = routing.experts.shape[0]
            lookahead = None
            if self.options.lookahead:
                ahead = self.tap.lookahead(routing)
                lookahead = np.full((n, routing.experts.shape[1]), -1, np.int16) if ahead is None else ahead.cpu().numpy()
            self.writer.append(
                request,
                np.arange(first_position, first_position + n, dtype=np.int32),
                phase,
                routing.layer,
                routing.experts.cpu().numpy(),
                routing.weights.cpu().numpy(),
                logits=routing.logits.cpu().numpy() if self.options.logits else None,
                lookahead=lookahead,
            )

    def _tick(self) -> None:
        if self.progress:
            done = self.prompt_tokens + self.decode_tokens
            self.progress(done, max(self.planned, done))
