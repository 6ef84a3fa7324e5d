"""`--config FILE` for simulate, run and compare: values from TOML, command-line flags win, unknown keys are errors; the
shipped examples in data/configs/ work with both commands."""

from __future__ import annotations

import json
import tomllib

import pytest

from traces.data_files import data_dir

SAMPLE = data_dir("samples", "mixtral-synth.parquet")
EXAMPLES = sorted(data_dir("configs").glob("*.toml"))


def runs(stdout: str) -> list[dict]:
    return json.loads(stdout)["runs"]


def test_three_examples_are_shipped():
    assert {p.stem for p in EXAMPLES} == {"edge-box", "desktop-24gb", "laptop-gpu"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_drives_simulate(run_cli, example):
    table = tomllib.loads(example.read_text())
    code, stdout, err = run_cli("simulate", SAMPLE, "--config", example, "--json", "--no-bound")
    assert code == 0, err
    (run,) = runs(stdout)
    assert (run["preset"], run["policy"], run["prefetch"]) == (table["preset"], table["policy"], table["prefetch"])
    assert run["vram_bytes"] < 2**30 * 32  # the file's VRAM, not the preset's
    for key, value in table.get("params", {}).items():
        assert f"{key}={value}" in run["policy_params"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_drives_run(run_cli, example, tiny_checkpoint, routed_trace):
    table = tomllib.loads(example.read_text())
    checkpoint = tiny_checkpoint("mixtral")
    code, stdout, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--config", example, "--json",
                                "--device", "cpu")
    assert code == 0, err
    (record,) = runs(stdout)
    assert (record["preset"], record["policy"], record["prefetch"]) == (table["preset"], table["policy"],
                                                                        table["prefetch"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_drives_compare(run_cli, example, tmp_path):
    table = tomllib.loads(example.read_text())
    code, stdout, err = run_cli("compare", SAMPLE, "--config", example, "--json", "--no-bound", "-o", tmp_path / "c",
                                "--workers", "1")
    assert code == 0, err
    (run,) = runs(stdout)  # the file's one policy, prefetcher and VRAM size
    assert (run["preset"], run["policy"], run["prefetch"]) == (table["preset"], table["policy"], table["prefetch"])


def test_flags_on_the_command_line_win(run_cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('policy = ["lru", "watermark"]\nvram-experts = 3\nram_experts = 6\nper-layer = true\n'
                      'preset = "laptop-8gb"\n[params]\nalpha = 0.3\n')
    code, stdout, err = run_cli("simulate", SAMPLE, "--config", config, "--json", "--no-bound")
    assert code == 0, err
    from_file = runs(stdout)
    assert [r["policy"] for r in from_file] == ["lru", "watermark"] and "alpha=0.3" in from_file[1]["policy_params"]
    code, stdout, err = run_cli("simulate", SAMPLE, "--config", config, "--json", "--no-bound", "-p", "watermark",
                                "--global", "--vram-experts", "40", "--ram-experts", "80", "--param", "alpha=0.7",
                                "--preset", "h100-pcie5")
    assert code == 0, err
    (run,) = runs(stdout)
    assert run["policy"] == "watermark" and "alpha=0.7" in run["policy_params"] and run["preset"] == "h100-pcie5"
    assert run["vram_bytes"] == 40 * 352321536 and from_file[0]["vram_bytes"] == 3 * 32 * 352321536


@pytest.mark.parametrize("text, message", [
    ("vram = '4GiB'\nbogus = 1\n", "unknown key 'bogus'"),
    ("routing-bonus = 0.5\n", "unknown key 'routing-bonus'"),  # simulate has it, run does not
    ("policy = ['lru', 'lfu']\n", "'policy' takes one value"),
    ("vram = \n", "not valid TOML"),
    ("vram = '4GiB'\nvram = '5GiB'\n", "not valid TOML"),
    ("vram-experts = 4\nvram_experts = 5\n", "'vram_experts' is given twice"),
])
def test_bad_config_files_are_one_line_and_exit_2(run_cli, tmp_path, tiny_checkpoint, routed_trace, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "out.parquet"
    checkpoint = tiny_checkpoint("mixtral")
    code, stdout, err = run_cli("run", routed_trace(checkpoint), "-w", checkpoint, "--config", config, "-o", out,
                                "--device", "cpu", "--no-live")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and stdout == ""


def test_a_missing_config_file_is_one_line(run_cli, tmp_path):
    code, _, err = run_cli("simulate", SAMPLE, "--config", tmp_path / "none.toml")
    assert code == 2 and "no such config file" in err
