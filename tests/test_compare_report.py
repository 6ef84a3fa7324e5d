"""`compare`'s report: self-contained HTML, a Markdown twin with the same sections, figures present, nothing
half-written, and a page that renders in headless Chromium without console errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest

from traces.data_files import data_dir

SAMPLE = data_dir("samples", "mixtral-synth.parquet")
SWEEP = ("-p", "lru", "-p", "fifo", "--vram-active", "0.3,0.6,1", "--global", "--ram", "0", "--workers", "1")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of two prefetchers (so it has every section but the routing one)."""
    from moecache_cli.app import main

    out = tmp_path_factory.mktemp("cmp")
    assert main(["compare", str(SAMPLE), *SWEEP, "--prefetch", "none", "--prefetch", "transitions", "-o", str(out),
                 "--quiet"]) == 0
    return out


def test_the_html_is_self_contained_with_every_figure(report):
    page = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", page), "an external URL"
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 5 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert page.count("<tr>") == 1 + 3 * 2  # header + capacities x prefetchers


def test_the_markdown_twin_has_the_same_sections_and_figure_files(report):
    page, md = (report / "report.html").read_text(), (report / "report.md").read_text()
    assert re.findall(r"<h2 id='[^']+'>([^<]+)</h2>", page) == re.findall(r"^## (.+)$", md, re.M)
    files = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert len(files) == 5 and all((report / f).read_bytes().startswith(PNG) for f in files)
    assert not list(report.glob(".report-*"))


def test_no_prefetch_section_without_prefetching_and_no_report_on_request(run_cli, tmp_path):
    code, stdout, err = run_cli("compare", SAMPLE, *SWEEP, "-o", tmp_path / "a", "--json")
    assert code == 0, err
    page = (tmp_path / "a" / "report.html").read_text()
    assert json.loads(stdout)["report"].endswith("report.html") and "Prefetch accuracy" not in page
    assert page.count("data:image/png") == 4
    code, _, err = run_cli("compare", SAMPLE, *SWEEP, "-o", tmp_path / "b", "--no-report", "--quiet")
    assert code == 0 and not (tmp_path / "b" / "report.html").exists() and (tmp_path / "b" / "results.parquet").exists()


def test_a_failing_figure_leaves_no_half_written_report(run_cli, tmp_path, monkeypatch):
    from moecache_cli import figures

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "layer_heatmap", broken)
    code, _, err = run_cli("compare", SAMPLE, *SWEEP, "-o", tmp_path, "--quiet")
    assert code == 2 and "No space left on device" in err
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report.md").exists()
    assert not (tmp_path / "figures").exists() and not list(tmp_path.glob(".report-*"))


def test_the_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (make test installs Debian's package where it can)")
    shot = tmp_path / "report.png"
    done = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--screenshot={shot}", "--window-size=1100,2400",
                           (report / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert done.returncode == 0 and console == [], console
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000


def test_runs_are_set_beside_their_prediction(run_cli, tmp_path, tiny_checkpoint, routed_trace):
    checkpoint = tiny_checkpoint("mixtral")
    trace = routed_trace(checkpoint)
    measured = tmp_path / "run.parquet"
    code, _, err = run_cli("run", trace, "-w", checkpoint, "--vram-experts", "4", "--ram-experts", "8", "--device",
                           "cpu", "--no-live", "--quiet", "-o", measured)
    assert code == 0, err
    code, stdout, err = run_cli("compare", trace, "-p", "lru", "--vram-fraction", "0.3,0.6", "--runs", measured,
                                "-o", tmp_path / "cmp", "--workers", "1", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    (record,) = report["measured"]
    assert record["measured_time_per_token_s"] > 0 and record["policy"] == "lru"
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Measured against predicted" in md and "(figures/measured.png)" in md
    assert f"measured {record['measured_time_per_token_s'] * 1e3:.3f} ms" in md


@pytest.mark.parametrize("which, message", [("other", "not among the compared traces"),
                                            ("results", "not a `moecache run` result"),
                                            ("missing", "no such file")])
def test_runs_that_do_not_belong_are_refused(run_cli, tmp_path, tiny_checkpoint, routed_trace, which, message):
    checkpoint = tiny_checkpoint("mixtral")
    run_file = tmp_path / "run.parquet"
    assert run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--vram-experts", "4", "--ram-experts", "8",
                   "--device", "cpu", "--no-live", "--quiet", "-o", run_file)[0] == 0
    if which == "results":
        assert run_cli("compare", SAMPLE, *SWEEP, "-o", tmp_path / "first", "--quiet", "--no-report")[0] == 0
        run_file = tmp_path / "first" / "results.parquet"
    elif which == "missing":
        run_file = tmp_path / "none.parquet"
    code, stdout, err = run_cli("compare", SAMPLE, *SWEEP, "--runs", run_file, "-o", tmp_path / "cmp", "--quiet")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cmp" / "results.parquet").exists()


def test_routing_bonuses_get_their_own_figure_and_stay_out_of_the_summary(run_cli, tmp_path):
    code, stdout, err = run_cli("compare", SAMPLE, *SWEEP, "--routing-bonus", "0.5", "--routing-bonus", "2",
                                "-o", tmp_path, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    bonuses = sorted({r["routing_bonus"] for r in report["runs"]})
    assert bonuses == [0.0, 0.5, 2.0]
    rerouted = [r for r in report["runs"] if r["routing_bonus"]]
    assert len(rerouted) == 2 * 3 * 2 and all(r["policy"] != "belady" for r in rerouted)  # Belady reads the future
    assert len(report["summary"]) == 3 and all(r["routing_changed_steps"] == 0 for r in report["runs"]
                                               if not r["routing_bonus"])
    assert "## Memory-aware routing trade-off" in (tmp_path / "report.md").read_text()


def test_routing_bonus_needs_a_trace_with_logits(run_cli, tmp_path, tiny_checkpoint, routed_trace):
    trace = routed_trace(tiny_checkpoint("mixtral"))
    code, _, err = run_cli("compare", trace, "--vram-fraction", "0.5", "--routing-bonus", "1", "-o", tmp_path,
                           "--quiet")
    assert code == 2 and "none of the traces has them" in err


def test_one_pass_curves_agree_with_the_runs_they_pass_through(run_cli, tmp_path):
    code, stdout, err = run_cli("compare", SAMPLE, *SWEEP, "-o", tmp_path, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    (curve,) = report["curves"]
    size = curve["vram_bytes"][0]  # capacity 1: one expert
    for run in report["runs"]:
        at = run["vram_bytes"] // size - 1  # the experts that fit in the run's bytes
        lru, belady = curve["lru"][at], curve["belady"][at]
        if run["policy"] == "lru":
            assert run["hit_rate"] == pytest.approx(lru, abs=1e-12)
        if run["policy"] == "belady":  # with bypass: at least Belady's hit rate without it
            assert run["hit_rate"] >= belady - 1e-12
    assert "every capacity, from one pass" in (tmp_path / "report.md").read_text()
    no_ram_tier = [a for a in SWEEP if a not in ("--ram", "0")] + ["--ram-experts", "0"]  # resolved the same way
    code, stdout, _ = run_cli("compare", SAMPLE, *no_ram_tier, "-o", tmp_path / "experts", "--json", "--no-report")
    assert code == 0 and json.loads(stdout)["curves"] == report["curves"]
    code, stdout, _ = run_cli("compare", SAMPLE, *SWEEP, "--prefetch", "transitions", "-o", tmp_path / "pf", "--json")
    assert code == 0 and json.loads(stdout)["curves"] == []  # prefetching: no one-pass curve applies
