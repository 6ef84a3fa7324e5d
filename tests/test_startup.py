"""`moecache --help` must start at once: importing the CLI loads no heavy library (torch, transformers, the
numba kernels, polars); each command imports them when it runs work that needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_script_freezes_what_lives_until_exit_and_keeps_mains_exit_code(tmp_path):
    # the console script is `console`, which leaves the collector out of what exists before and after `main`
    # (the imported libraries live until the process ends); a user's error still ends in one line and code 2
    code = ("import gc, sys; from moecache_cli.app import console; sys.argv = ['moecache', 'traces', 'info', "
            f"{str(tmp_path / 'absent.parquet')!r}]; code = console(); print('FROZEN', gc.get_freeze_count() > 1000, "
            "code)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "FROZEN True 2" in run.stdout
    assert run.stderr.count("\n") == 1 and "absent.parquet" in run.stderr
    script = Path(sys.executable).parent / "moecache"
    if script.exists():  # the installed entry point is `console`
        assert "import console" in script.read_text()
