"""`moecache simulate` from the command line: outputs with DESIGN.md's names, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "mixtral-synth.parquet"
NAMES = ("trace", "policy", "prefetch", "vram_bytes", "ram_bytes", "accesses", "vram_hits", "vram_misses",
         "vram_hit_rate", "ram_hits", "ram_misses", "ram_hit_rate", "hit_rate", "misses", "bytes_nvme_to_ram",
         "bytes_ram_to_vram", "evictions", "prefetch_issued", "prefetch_used", "prefetch_accuracy",
         "prefetch_coverage", "stall_p50_ms", "stall_p99_ms", "time_per_token_s", "tokens_per_s",
         "routing_changed_steps", "routing_weight_lost")


def test_json_and_parquet_carry_every_metric_name(run_cli, tmp_path):
    out = tmp_path / "runs.parquet"
    code, stdout, _ = run_cli("simulate", SAMPLE, "-p", "lru", "-p", "watermark", "--vram-experts", "4", "--per-layer",
                              "--prefetch", "lookahead", "--json", "-o", out)
    assert code == 0
    runs = json.loads(stdout)["runs"]
    assert [r["policy"] for r in runs] == ["lru", "watermark", "belady"]
    assert "bypass=1" in runs[2]["policy_params"]
    for run in runs:
        assert set(NAMES) <= set(run)
        assert run["hit_rate"] == run["vram_hit_rate"] and run["misses"] == run["vram_misses"]
        assert run["prefetch_issued"] > 0 and run["tokens_per_s"] > 0
    assert runs[2]["vram_misses"] <= min(runs[0]["vram_misses"], runs[1]["vram_misses"])
    table = pq.read_table(out)
    assert table.num_rows == 3 and set(NAMES) <= set(table.column_names)
    assert not list(tmp_path.glob(".*.part"))


def test_table_for_people_and_the_curves(run_cli):
    code, stdout, _ = run_cli("simulate", SAMPLE, "-p", "lfu", "--vram", "8GiB", "--ram", "0", "--global",
                              "--preset", "laptop-8gb", "--quiet")
    assert code == 0 and "belady (bound)" in stdout and "tokens_per_s" in stdout and "laptop-8gb" in stdout
    code, stdout, _ = run_cli("simulate", SAMPLE, "--mrc", "--json")
    curve = json.loads(stdout)["curves"][0]
    assert code == 0 and len(curve["lru"]) == 256 and curve["belady"][-1] <= curve["lru"][-1]


@pytest.mark.parametrize("args, message", [
    (["--vram", "500MB", "--per-layer"], "cannot hold one step's 2 expert(s)"),
    (["--vram-experts", "1", "--ram", "0", "--pinned"], "raise --vram"),
    (["-p", "clock"], "unknown policy 'clock'"),
    (["--preset", "toaster"], "unknown hardware preset 'toaster'"),
    (["--precision", "float8", "--preset", "jetson-agx-orin-32gb"], "computes only"),
    (["--vram", "10GiB", "--ram", "5GiB"], "inclusive tiers need RAM at least as large as VRAM"),
    (["--vram", "lots"], "expected a size such as 4GiB"),
    (["--param", "alpha=0.3"], "none of the chosen policies (lru)"),
    (["-p", "watermark", "--param", "alpha=2"], "alpha=2.0 must be within 0.0..1.0"),
    (["--prefetch", "oracle"], "unknown prefetcher 'oracle'"),
    (["--prefetch", "affinity", "--prefetch-limit", "0"], "--prefetch-limit must be at least 1"),
    (["-p", "belady", "--no-bound", "--routing-bonus", "1", "--vram-experts", "4", "--per-layer"],
     "reads the recorded future"),
])
def test_bad_input_is_one_line_and_exit_2(run_cli, args, message):
    code, stdout, stderr = run_cli("simulate", SAMPLE, *args)
    assert code == 2, stderr
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_trace_without_logits_or_lookahead_says_how_to_record(run_cli, make_trace):
    path = make_trace([(0, 0, [0]), (1, 0, [1])])
    code, _, stderr = run_cli("simulate", path, "--routing-bonus", "1", "--vram-experts", "2", "--no-bound")
    assert code == 2 and "record it with --logits" in stderr
    code, _, stderr = run_cli("simulate", path, "--prefetch", "lookahead", "--vram-experts", "2")
    assert code == 2 and "record with --lookahead" in stderr
    code, _, stderr = run_cli("simulate", path.parent / "missing.parquet")
    assert code == 2 and "no such file" in stderr


def test_many_policies_fit_80_columns(run_cli, monkeypatch):
    from moecache_cli import render

    monkeypatch.setattr(render.console, "_width", 80)
    policies = ["lru", "fifo", "lfu", "belady", "watermark", "affinity", "layer-lru"]
    args = ["simulate", SAMPLE, *[a for p in policies for a in ("-p", p)], "--vram-experts", "4", "--per-layer",
            "--quiet"]
    code, stdout, _ = run_cli(*args)
    assert code == 0 and "…" not in stdout and "belady (bound)" in stdout
    assert max(len(line) for line in stdout.splitlines()) <= 80
    for policy in policies:
        assert any(line.split() and line.split()[0] == policy for line in stdout.splitlines()), policy
    code, stdout, _ = run_cli(*args, "--wide")
    assert code == 0 and "routing_weight_lost" in stdout  # every metric, as rows


def test_help_shows_flags_as_flags_and_offers_completion(run_cli):
    code, stdout, _ = run_cli("simulate", "--help")
    lines = {line.split()[1]: line for line in stdout.splitlines() if line.startswith("│ --")}
    assert code == 0 and "<" not in lines["--per-layer"] and "<" not in lines["--policy"] and "<" not in lines["--help"]
    assert "INTEGER" in lines["--vram-experts"] and "TEXT" in lines["--policy"]
    code, stdout, _ = run_cli("--help")
    assert code == 0 and "--install-completion" in stdout


def test_ctrl_c_during_simulate_is_one_line_and_exit_2(run_cli, monkeypatch):
    import simulator.replay

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(simulator.replay, "simulate", interrupted)
    code, stdout, err = run_cli("simulate", SAMPLE, "--quiet")
    assert code == 2 and err.strip() == "moecache: error: interrupted" and stdout == ""


def test_compile_notice_says_once_that_numba_compiles(capsys):
    """numba announces a compile (not a load from its disk cache) with a "numba:compile" event: the notice
    prints one line at the first, none at later ones, none once the command is done or when quiet."""
    from numba.core import event

    from moecache_cli import render

    def compile_event() -> None:
        with event.trigger_event("numba:compile"):
            pass

    with render.compile_notice(True):
        assert capsys.readouterr().err == ""
        compile_event()
        compile_event()
    compile_event()
    with render.compile_notice(False):
        compile_event()
    err = capsys.readouterr().err
    assert err.count("compiling kernels") == 1 and err.count("\n") == 1
