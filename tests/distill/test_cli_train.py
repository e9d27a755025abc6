"""`minitron train` in-process: options reach the loop, errors are one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from minitron.cli import app


def train_args(tmp_path, corpus, tokenizer, make_model):
    """A 3-step `minitron train` of a saved tiny model into tmp_path/run: (checkpoint, out, argv)."""
    ckpt = tmp_path / "ckpt"
    make_model(0).save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    out = tmp_path / "run"
    args = ["train", str(ckpt), "--data", str(corpus), "--seq-len", "16", "--batch-size", "2", "--steps", "3"]
    args += ["--out", str(out), "--eval-batches", "1", "--warmup-steps", "1", "--device", "cpu"]
    return ckpt, out, args


def test_train_command_runs_and_resumes(tmp_path, corpus, tokenizer, make_model):
    ckpt, out, args = train_args(tmp_path, corpus, tokenizer, make_model)
    first = CliRunner().invoke(app, [*args, "--stop-at-step", "2"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "result.json").read_text())["step"] == 2
    second = CliRunner().invoke(app, [*args, "--resume"])
    assert second.exit_code == 0, second.output
    assert json.loads((out / "result.json").read_text())["step"] == 3
    assert (out / "final" / "model.safetensors").exists()
    header = json.loads((out / "train_config.json").read_text())
    assert header["config"]["data"]["seq_len"] == 16 and header["model"]["model"] == str(ckpt)
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "final" / "README.md")  # the card names the command that started the run
    assert card.data.base_model == str(ckpt) and card.data.tags == ["minitron", "trained"]
    (line,) = [line for line in card.text.splitlines() if line.startswith("minitron train")]
    assert (
        line.startswith(f"minitron train {ckpt} ")
        and f"--data {corpus}" in line
        and "--stop-at-step 2" in line
    )


def test_the_same_command_again_continues_its_run_and_another_is_refused(
    tmp_path, corpus, tokenizer, make_model
):
    _, out, args = train_args(tmp_path, corpus, tokenizer, make_model)
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"note: --out {out} holds this same run; continuing it (as --resume)" in again.output
    assert json.loads((out / "result.json").read_text())["step"] == 3
    other = CliRunner().invoke(app, [*args, "--lr", "0.01"])
    assert other.exit_code == 1 and "already holds a run" in other.output


def test_train_command_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["train", "tiny", "--steps", "0"])
    assert result.exit_code == 1 and "--steps" in result.output


@pytest.mark.no_cuda
def test_train_on_cuda_without_cuda_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "tiny", "--device", "cuda", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "CUDA" in result.output and not (tmp_path / "run").exists()


def test_unusable_data_is_one_line_naming_train_options_and_leaves_out_empty(
    tmp_path, corpus, tokenizer, make_model
):
    ckpt = tmp_path / "ckpt"
    make_model(0).save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    out = tmp_path / "run"
    args = [
        "train",
        str(ckpt),
        "--data",
        str(corpus),
        "--seq-len",
        "4096",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: data '{corpus}': the heldout split has fewer than --seq-len 4096 tokens; "
        "use more text, a shorter --seq-len or another --heldout-fraction"
    ]
    assert not (out / "train_config.json").exists() and not (out.exists() and any(out.iterdir()))


def test_train_help():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output
