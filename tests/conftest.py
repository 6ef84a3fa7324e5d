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
