"""`moecache --help` must start at once: importing the CLI loads no heavy library (torch, transformers, the
numba kernels, polars); each command imports them when it runs work that needs them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "numba", "polars")


def test_importing_the_cli_loads_no_heavy_library():
    code = f"import sys, moecache_cli.app; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_a_metadata_command_load_no_torch(tmp_path):
    code = ("import sys; from moecache_cli.app import main; main(['--help']); main(['run', '--help']); "
            "main(['checkpoint', 'tiny', '--help']); print('LOADED', [m for m in ('torch', 'transformers') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out and "--weights" in out
