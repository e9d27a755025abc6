"""Issue 20 item 12: the demo is cheaper where the story does not change (bf16 autocast on CPUs with
bf16 units, fewer held-out batches and checkpoints), and bench/demo_time.py can time its stages."""

from __future__ import annotations

import io

import torch
from bench_scripts import load_bench
from rich.console import Console

from minitron.cli import app
from minitron.cli_options import stage_options
from minitron.device import autocast, cpu_has_bf16
from minitron.model.load import ASSETS_DIR
from minitron.pipeline import load_run_config


def _demo_time():
    return load_bench("demo_time")


def test_native_precision_follows_the_cpu():
    flags = _demo_time().cpu_flags()
    if flags:  # Linux: what /proc/cpuinfo says the CPU has
        assert cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
    cpu = torch.device("cpu")
    assert autocast("native", cpu)._enabled == cpu_has_bf16()
    assert not autocast("auto", cpu)._enabled  # the default keeps float32 on every CPU


def test_demo_uses_it_and_fewer_heldout_batches():
    config = load_run_config(ASSETS_DIR / "demo.toml", stage_options(app))
    for stage in ("compare", "distill"):
        assert config.stages[stage]["precision"] == "native"
        assert config.stages[stage]["eval_batches"] == 4
    assert config.stages["distill"]["steps"] == 150  # the story: as long a distillation as before


def test_stage_headers_are_recognised():
    demo_time = _demo_time()
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    for stage in demo_time.STAGES:
        console.rule(f"[bold]{stage}")
    lines = console.file.getvalue().splitlines()
    assert [demo_time.HEADER.match(line.strip())[1] for line in lines] == list(demo_time.STAGES)
    assert demo_time.HEADER.match("step 0: held-out loss 4.1") is None
    assert demo_time.cpu_model()


def test_fresh_clone_installs_what_the_readme_says():
    """The timed install is the README's own (torch pinned to its CPU build), not a bare `pip install .`."""
    from pathlib import Path

    argv = _demo_time().readme_install(Path(__file__).resolve().parents[2])
    assert argv[:2] == ["pip", "install"] and "-e" in argv
    assert any(a.startswith("torch==") for a in argv)
