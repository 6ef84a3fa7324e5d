"""`moecache compare`: the results table of a sweep, resuming, --json and bad input."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from traces.data_files import data_dir

SAMPLE = data_dir("samples", "mixtral-synth.parquet")
DEMAND = ("--global", "--ram", "0")  # plain demand caching: LRU is a stack algorithm there


def rows(folder):
    return pq.read_table(folder / "results.parquet").to_pylist()


def test_every_run_of_the_sweep_is_a_row_and_no_policy_beats_the_bound(run_cli, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli("compare", SAMPLE, "-p", "lru", "-p", "fifo", "-p", "lfu", "--vram-active", "0.2:1:5",
                                *DEMAND, "-o", out, "--workers", "2", "--quiet")
    assert code == 0, err
    table = rows(out)
    assert len(table) == 5 * 4  # capacities x (three policies + the bound)
    assert {(r["policy"], r["vram_bytes"]) for r in table} == {(p, v) for p in ("lru", "fifo", "lfu", "belady")
                                                               for v in {r["vram_bytes"] for r in table}}
    assert all(r[k] is not None for r in table for k in ("hit_rate", "vram_misses", "tokens_per_s", "run_key"))
    bound = {r["vram_bytes"]: r["hit_rate"] for r in table if r["policy"] == "belady"}
    assert all(r["hit_rate"] <= bound[r["vram_bytes"]] + 1e-12 for r in table)
    lru = [r["hit_rate"] for r in sorted((r for r in table if r["policy"] == "lru"), key=lambda r: r["vram_bytes"])]
    assert lru == sorted(lru) and lru[0] < lru[-1]
    assert "best" in stdout and "results:" in stdout


def test_the_summary_fits_80_columns_with_every_value_whole(run_cli, tmp_path, monkeypatch):
    from moecache_cli import render

    monkeypatch.setattr(render.console, "_width", 80)
    other = tmp_path / "another-trace.parquet"
    shutil.copy(SAMPLE, other)  # two traces and two prefetchers: every column of the summary is shown
    code, stdout, err = run_cli("compare", SAMPLE, other, "-p", "lru", "-p", "watermark", "--prefetch", "none",
                                "--prefetch", "transitions", "--vram-active", "1,2", "--no-report", "-o",
                                tmp_path / "cmp", "--workers", "1", "--quiet")
    assert code == 0, err
    lines = stdout.splitlines()
    assert "…" not in stdout and max(len(line) for line in lines) <= 80
    assert sum(line.split()[:1] == ["another-trace"] and "transitions" in line.split() for line in lines) == 2
    assert any("Belady" in line.split() for line in lines)  # the header wrapped at its space instead


def test_a_sweep_whose_workers_compile_says_so_once(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))  # the workers find no kernel on disk
    code, _, err = run_cli("compare", SAMPLE, "-p", "fifo", "--vram-active", "1,2", *DEMAND, "--no-bound",
                           "--no-report", "-o", tmp_path / "cmp", "--workers", "2")
    assert code == 0, err
    assert err.count("compiling kernels") == 1  # two workers compile, one line says it
    code, _, err = run_cli("compare", SAMPLE, "-p", "fifo", "--vram-active", "1,2", *DEMAND, "--no-bound",
                           "--no-report", "-o", tmp_path / "again", "--workers", "2")
    assert code == 0 and "compiling" not in err  # loaded from the disk cache this time


def test_json_has_the_runs_and_the_best_policy_per_budget(run_cli, tmp_path):
    code, stdout, err = run_cli("compare", SAMPLE, "-p", "lru", "-p", "lfu", "--vram-active", "0.5,1", *DEMAND,
                                "-o", tmp_path / "cmp", "--workers", "1", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert len(report["runs"]) == 6 and len(report["summary"]) == 2
    for s in report["summary"]:
        runs = [r for r in report["runs"] if r["vram_bytes"] == s["vram_bytes"] and r["policy"] != "belady"]
        assert s["hit_rate"] == max(r["hit_rate"] for r in runs)
        assert s["gap_to_belady"] >= 0 and s["gain_over_lru"] >= 0


def test_an_interrupted_sweep_keeps_its_runs_and_resume_runs_only_the_others(run_cli, tmp_path, monkeypatch):
    import simulator.sweep_run as sweep_run

    real, calls = sweep_run.run_one, []

    def counted(run):
        calls.append(run.config.policy)
        if len(calls) == 3 and interrupt:
            raise KeyboardInterrupt
        return real(run)

    monkeypatch.setattr(sweep_run, "run_one", counted)
    out = tmp_path / "cmp"
    args = ("compare", SAMPLE, "-p", "lru", "-p", "fifo", "--vram-active", "0.5,1", *DEMAND, "-o", out,
            "--workers", "1", "--quiet", "--no-bound")
    interrupt = True
    code, _, err = run_cli(*args)
    assert code == 2 and "interrupted" in err and len(rows(out)) == 2
    interrupt, calls[:] = False, []
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert len(calls) == 2 and len(rows(out)) == 4
    calls[:] = []
    assert run_cli(*args, "--resume")[0] == 0 and calls == []  # all kept
    assert run_cli(*args)[0] == 0 and len(calls) == 4  # without --resume the sweep starts again


@pytest.mark.parametrize("args, message", [
    ((), "one of --vram, --vram-fraction or --vram-active"),
    (("--vram-active", " "), "the sweep is empty"),
    (("--vram-active", "1", "--vram", "1GiB"), "one of --vram, --vram-fraction or --vram-active"),
    (("--vram", "8GiB:1GiB:4"), "out of order"),
    (("--vram", "1GiB:8GiB:0"), "at least one value"),
    (("--vram", "100MB:8GiB:4"), "cannot hold one step's experts"),
    (("--vram-active", "1", "--prefetch", "lookahead", "-p", "nope"), "unknown policy 'nope'"),
    (("--vram-active", "4", "--ram", "8GiB"), "inclusive tiers need RAM at least as large as VRAM"),
])
def test_bad_sweeps_are_one_line_and_write_nothing(run_cli, tmp_path, args, message):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli("compare", SAMPLE, *args, "-o", out, "--quiet")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / "results.parquet").exists() and stdout == ""


def test_an_output_that_cannot_be_a_folder_is_refused(run_cli, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    for out, message in ((tmp_path / "missing" / "cmp", "does not exist"), (afile, "cannot create the output folder")):
        code, _, err = run_cli("compare", SAMPLE, "--vram-active", "1", "-o", out, "--quiet")
        assert code == 2 and message in err


def test_the_same_sweep_on_a_local_ray_instance(run_cli, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'moecache[ray]'): --ray not tested")
    sweep = ("compare", SAMPLE, "-p", "lru", "-p", "fifo", "--vram-active", "0.5,1", *DEMAND, "--json", "--no-report")
    try:
        code, stdout, err = run_cli(*sweep, "--ray", "local", "-o", tmp_path / "ray")
    finally:
        ray.shutdown()
    assert code == 0, err
    code, local, err = run_cli(*sweep, "--workers", "1", "-o", tmp_path / "pool")
    assert code == 0, err
    assert json.loads(stdout)["runs"] == json.loads(local)["runs"]
