"""Shared fixtures: tiny checkpoints built locally, the real Mixtral logs from ../shared/traces."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


@pytest.fixture(scope="session")
def shared_log():
    """Path of a real routing log in ../shared/traces, or a clear skip where it is absent."""

    def find(name: str) -> Path:
        path = SHARED_TRACES / name
        if not path.exists():
            pytest.skip(f"real routing log {path} not present (it lives in the project's shared/ folder)")
        return path

    return find


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Build (once per session) a random-weight checkpoint of an architecture."""
    from engine.tiny_checkpoint import write_tiny_checkpoint

    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            built[arch] = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / arch, arch, seed=1)
        return built[arch]

    return build


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from moecache_cli.app import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def make_trace(tmp_path):
    """Write a hand-built decode trace: `rows` is a list of (token, layer, experts[, lookahead][, logits])."""
    import numpy as np

    from traces.schema import TraceMeta
    from traces.writer import TraceWriter

    counter = iter(range(1000))

    def build(rows, num_layers=1, num_experts=4, top_k=1, bytes_per_expert=1_000_000, lookahead=False,
              logits=False, phase="decode", request=0, dtype="bfloat16"):
        meta = TraceMeta(model="hand", architecture="mixtral", num_layers=num_layers, num_experts=num_experts,
                         top_k=top_k, bytes_per_expert=(bytes_per_expert,), dtype=dtype)
        path = tmp_path / f"hand{next(counter)}.parquet"
        writer = TraceWriter(path, meta, logits=logits, lookahead=lookahead, row_group_rows=7)
        for row in rows:
            token, layer, experts = row[0], row[1], row[2]
            extra = list(row[3:])
            writer.append(request, np.array([token]), phase, layer, np.array([experts]),
                          np.full((1, top_k), 1.0 / top_k, np.float32),
                          lookahead=np.array([extra.pop(0)]) if lookahead else None,
                          logits=np.array([extra.pop(0)], np.float32) if logits else None)
        writer.close()
        return path

    return build


@pytest.fixture(scope="session")
def routed_trace(tmp_path_factory):
    """Write a trace whose model matches a checkpoint folder: random routing with some locality, two requests
    of a prefill (several tokens per step) then decode tokens, in row groups of 7 rows so that steps and
    prefill chunks cross row-group boundaries; with a lookahead column."""
    import numpy as np

    from engine.layout import open_layout
    from traces.schema import TraceMeta
    from traces.writer import TraceWriter

    def build(checkpoint: Path, top_k: int = 2, prompt: int = 5, decode: int = 12, seed: int = 0) -> Path:
        layout = open_layout(checkpoint)
        layers, experts = layout.num_layers, layout.num_experts
        rng = np.random.default_rng(seed)
        meta = TraceMeta(model=Path(checkpoint).name, architecture=layout.architecture, num_layers=layers,
                         num_experts=experts, top_k=top_k, bytes_per_expert=(layout.format.expert_bytes,),
                         dtype=layout.format.dtype)
        path = tmp_path_factory.mktemp("routed") / f"{Path(checkpoint).name}-{seed}.parquet"
        writer = TraceWriter(path, meta, lookahead=True, row_group_rows=7)
        previous = rng.permutation(experts)[:top_k]

        def choose(n: int) -> np.ndarray:
            nonlocal previous
            rows = []
            for _ in range(n):
                row = previous.copy() if rng.random() < 0.4 else rng.permutation(experts)[:top_k]
                rows.append(row)
                previous = row
            return np.array(rows, np.int16)

        def weights(n: int) -> np.ndarray:
            w = rng.random((n, top_k)).astype(np.float32) + 0.1
            return w / w.sum(axis=1, keepdims=True)

        for request in range(2):
            for layer in range(layers):
                chosen = choose(prompt)
                writer.append(request, np.arange(prompt), "prefill", layer, chosen, weights(prompt),
                              lookahead=choose(prompt))
            for token in range(prompt, prompt + decode):
                for layer in range(layers):
                    writer.append(request, np.array([token]), "decode", layer, choose(1), weights(1),
                                  lookahead=choose(1))
        writer.close()
        return path

    return build
