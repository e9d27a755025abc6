"""device.py, the one --device parser: what `auto` picks, and a device this machine lacks is one line
from every command that takes --device (CUDA is hidden, so this holds on GPU machines too)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from minitron.cli import app
from minitron.device import autocast, resolve_device
from minitron.errors import MinitronError


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_cuda(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_and_plain_cuda_are_this_process_gpu(two_gpus, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second torchrun process of a node
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(MinitronError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda", "--device cuda: this machine has no CUDA device (use cpu or auto)"),
        ("cuda:1", "--device cuda:1: this machine has no CUDA device"),
        ("gpu", "--device: unknown device 'gpu'"),
        ("meta", "--device: 'meta' is not supported"),
    ],
)
def test_unusable_devices_are_one_clear_error(no_cuda, name, message):
    with pytest.raises(MinitronError) as info:
        resolve_device(name)
    assert message in str(info.value)


def test_errors_name_the_flag(no_cuda):
    with pytest.raises(MinitronError, match="^--teacher-device cuda: "):
        resolve_device("cuda", "--teacher-device")


def test_auto_precision_is_fp32_on_the_cpu():
    cpu = torch.device("cpu")
    assert not autocast("auto", cpu)._enabled  # even on CPUs with bf16 units: same numbers everywhere
    assert autocast("bf16", cpu)._enabled and not autocast("fp32", cpu)._enabled
    with pytest.raises(MinitronError, match="--precision must be one of auto, native, bf16, fp32"):
        autocast("fp8", cpu)


@pytest.mark.parametrize(
    "args",
    [
        ["score", "tiny", "--out", "OUT/scores.safetensors"],
        ["search", "tiny", "--budget", "20MiB", "--out", "OUT"],
        ["train", "tiny", "--out", "OUT"],
        ["distill", "tiny", "tiny", "--out", "OUT"],
        ["distill", "tiny", "tiny", "--out", "OUT", "--device", "cpu", "--teacher-device"],
        ["compare", "tiny", "CANDIDATES", "--out", "OUT"],
        ["evaluate", "tiny", "--tasks", "hellaswag", "--out", "OUT"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-1:]),
)
def test_cuda_without_cuda_is_one_line_from_every_command(no_cuda, tmp_path, args):
    if args[0] == "evaluate":
        pytest.importorskip("lm_eval")
    out = tmp_path / "out"
    args = [a.replace("OUT", str(out)).replace("CANDIDATES", str(tmp_path / "c.json")) for a in args]
    if args[-1] != "--teacher-device":
        args.append("--device")
    result = CliRunner().invoke(app, [*args, "cuda"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {args[-1]} cuda: this machine has no CUDA device (use cpu or auto)"
    ]
    assert not out.exists()


def test_run_checks_every_stage_device_before_the_first_stage(no_cuda, tmp_path):
    run_file = tmp_path / "run.toml"
    run_file.write_text('teacher = "tiny"\n[distill]\ndevice = "cuda"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(run_file), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {run_file} [distill] device cuda: this machine has no CUDA device (use cpu or auto)"
    ]
    assert not out.exists()
