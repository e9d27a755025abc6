"""`minitron distill`: outputs, one-line errors, and faults (NaN, Ctrl-C, kill -9 then --resume) on the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paused import paused_command, subprocess_env, wait_for_flag
from safetensors.torch import load_file
from typer.testing import CliRunner

from minitron.cli import app


def args(pair, corpus, out, *extra):
    teacher, student = pair
    return ["distill", str(teacher), str(student), "--data", str(corpus), "--seq-len", "16", "--batch-size", "2",
            "--eval-batches", "1", "--warmup-steps", "1", "--lr", "1e-2", "--device", "cpu", "--out", str(out),
            *extra]  # fmt: skip


def test_distill_writes_a_model_with_provenance_and_learns(tmp_path, pair, corpus):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, args(pair, corpus, out, "--steps", "12", "--eval-every", "12"))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_kd" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 12
    assert evals[-1]["eval_kd"] < 0.7 * evals[0]["eval_kd"]  # the student moved towards the teacher
    assert evals[-1]["eval_teacher_lm_loss"] == pytest.approx(evals[0]["eval_teacher_lm_loss"])  # frozen
    record = json.loads((out / "final" / "minitron.json").read_text())
    assert record["provenance"]["teacher"]["path"] == str(pair[0].resolve())
    assert record["provenance"]["student_source"]["path"] == str(pair[1].resolve())
    assert record["steps"] == 12 and record["tokens"] == 12 * 2 * 16 and record["data"]["kind"] == "jsonl"
    assert record["heldout_after"]["eval_kd"] == evals[-1]["eval_kd"]
    assert (out / "final" / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "final")  # a normal HF checkpoint
    assert not torch.equal(load_file(pair[1] / "model.safetensors")["lm_head.weight"],
                           load_file(out / "final" / "model.safetensors")["lm_head.weight"])  # fmt: skip


def test_resume_refuses_another_teacher_or_objective(tmp_path, pair, corpus):
    out = tmp_path / "run"
    first = CliRunner().invoke(app, args(pair, corpus, out, "--steps", "4", "--stop-at-step", "2"))
    assert first.exit_code == 0, first.output
    swapped = CliRunner().invoke(app, args(pair[::-1], corpus, out, "--steps", "4", "--resume"))
    assert swapped.exit_code == 1 and "teacher" in swapped.output
    other_loss = CliRunner().invoke(app, args(pair, corpus, out, "--steps", "4", "--resume", "--loss", "jsd"))
    assert other_loss.exit_code == 1 and "objective" in other_loss.output
    other_data = CliRunner().invoke(
        app, args(pair, corpus, out, "--steps", "4", "--resume", "--seq-len", "8")
    )
    assert other_data.exit_code == 1 and "seq_len" in other_data.output


@pytest.mark.parametrize(
    "extra, message",
    [(["--steps", "0"], "--steps"), (["--steps", "-3"], "--steps"), (["--lr", "1e400"], "--lr"),
     (["--lr", "0"], "--lr"), (["--tokens", "-5"], "--tokens"), (["--device", "cuda"], "CUDA"),
     (["--loss", "kl"], "--loss"), (["--tau", "0"], "--tau"), (["--chunk-tokens", "0"], "--chunk-tokens"),
     (["--fsdp"], "torchrun")],
)  # fmt: skip
def test_bad_options_are_one_line_and_write_nothing(tmp_path, pair, corpus, extra, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, args(pair, corpus, out, "--steps", "2", *extra))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1] and "Traceback" not in result.output
    assert not out.exists()


def test_missing_paths_and_vocabulary_mismatch(tmp_path, pair, corpus, make_model):
    out = tmp_path / "run"
    missing = CliRunner().invoke(app, args((tmp_path / "nope", pair[1]), corpus, out, "--steps", "2"))
    assert missing.exit_code == 1 and "error:" in missing.output and not out.exists()
    no_data = CliRunner().invoke(app, args(pair, tmp_path / "none.jsonl", out, "--steps", "2"))
    assert no_data.exit_code == 1 and "--data" in no_data.output and not out.exists()
    # The shipped tiny teacher has another tokenizer and a 4096 vocabulary.
    mismatch = CliRunner().invoke(
        app, ["distill", "tiny", str(pair[1]), "--data", str(corpus), "--out", str(out)]
    )
    assert mismatch.exit_code == 1 and "tokenizers differ" in mismatch.output and not out.exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, pair, corpus):
    out = tmp_path / "run"
    # An absurd learning rate blows the weights up after the first update.
    result = CliRunner().invoke(app, args(pair, corpus, out, "--steps", "6", "--lr", "1e30", "--warmup-steps", "0",
                                          "--grad-clip", "0", "--save-every", "1", "--eval-every", "0"))  # fmt: skip
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error:") and "at step" in line and "checkpoint" in line, result.output
    kept = (out / "checkpoints" / "latest").read_text().strip()
    state = torch.load(out / "checkpoints" / kept / "state.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (out / "final").exists()


def cli(*arguments):
    return [sys.executable, "-m", "minitron", *arguments], subprocess_env()


def final_weights(out: Path):
    return load_file(out / "final" / "model.safetensors")


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, pair, corpus):
    common = args(pair, corpus, tmp_path / "x", "--steps", "14", "--save-every", "3", "--eval-every", "7")[
        :-2
    ]
    whole, env = cli(*common, "--out", str(tmp_path / "whole"))
    assert subprocess.run(whole, env=env, capture_output=True, timeout=300).returncode == 0
    killed_out = tmp_path / "killed"
    command, env = cli(*common, "--out", str(killed_out))
    # Stopped right after the second checkpoint (step 6 of 14, saved every 3).
    flag = tmp_path / "paused"
    paused = paused_command(
        [*common, "--out", str(killed_out)], "minitron.distill.rundir:RunDir.save", 2, flag
    )
    proc = subprocess.Popen(paused, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_flag(flag, proc)
    assert (killed_out / "checkpoints" / "latest").read_text().strip() == "step-00000006"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed_out / "final").exists()
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = final_weights(tmp_path / "whole"), final_weights(killed_out)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    loss_steps = [
        json.loads(line)["step"]
        for line in (killed_out / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert loss_steps == [10, 14]  # logged every 10 steps and at the end; nothing logged twice


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resume_equals_uninterrupted(tmp_path, pair, corpus):
    out = tmp_path / "run"
    steps = ["--steps", "150", "--save-every", "1000", "--eval-every", "0"]
    command, env = cli(*args(pair, corpus, out, *steps))
    # Interrupted while step 10 is being logged (its first metrics record), inside the loop.
    flag = tmp_path / "paused"
    paused = paused_command(command[3:], "minitron.distill.rundir:Metrics.write", 1, flag, "before")
    proc = subprocess.Popen(paused, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_flag(flag, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stdout + stderr and "Traceback" not in stderr
    step = int((out / "checkpoints" / "latest").read_text().strip().split("-")[1])
    assert step == 10, step
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = CliRunner().invoke(app, args(pair, corpus, tmp_path / "whole", *steps))
    assert whole.exit_code == 0, whole.output
    a, b = final_weights(tmp_path / "whole"), final_weights(out)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)


def test_accumulation_gives_the_gradient_of_one_big_batch(tmp_path, pair, corpus):
    """4 sequences as 1 x 4 or as 2 accumulated micro-batches of 2: the same updates (token-normalised loss)."""
    big = CliRunner().invoke(app, args(pair, corpus, tmp_path / "big", "--steps", "3", "--batch-size", "4"))
    accum = CliRunner().invoke(app, args(pair, corpus, tmp_path / "acc", "--steps", "3", "--grad-accum", "2"))
    assert big.exit_code == 0 and accum.exit_code == 0, big.output + accum.output
    a = load_file(tmp_path / "big" / "final" / "model.safetensors")
    b = load_file(tmp_path / "acc" / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=2e-5, msg=name)


def test_stopped_distill_on_a_streamed_hub_dataset_resumes_at_the_same_document(
    tmp_path, pair, corpus, hub_repo, monkeypatch
):
    import minitron.data as data_module
    from minitron.distill.checkpoint import latest_checkpoint, load_checkpoint

    # A shuffle buffer of 5 sequences: the checkpoint falls mid-stream, in the repository's second shard.
    monkeypatch.setattr(data_module, "SHUFFLE_SEQUENCES", 5)
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    source = f"hf:{hub_repo(texts)}@train"
    common = [
        *args(pair, source, tmp_path / "x")[:-2],
        "--steps",
        "8",
        "--save-every",
        "2",
        "--eval-every",
        "4",
    ]
    whole = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    split = tmp_path / "split"
    stopped = CliRunner().invoke(app, [*common, "--out", str(split), "--stop-at-step", "3"])
    assert stopped.exit_code == 0, stopped.output
    position = load_checkpoint(latest_checkpoint(split))["data"]["position"]
    assert position["examples_iterable"]["examples_iterable"]["shard_idx"] == 1  # the stream's own state
    resumed = CliRunner().invoke(app, [*common, "--out", str(split), "--resume"])
    assert resumed.exit_code == 0, resumed.output

    def evals(out):
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["eval_kd"], r["eval_lm_loss"]) for r in records if "eval_kd" in r]

    assert [r[0] for r in evals(split)] == [0, 4, 8]
    flat = [v for record in evals(split) for v in record]
    assert flat == pytest.approx([v for record in evals(tmp_path / "whole") for v in record], rel=1e-4)
    a, b = final_weights(tmp_path / "whole"), final_weights(split)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    assert json.loads((split / "final" / "minitron.json").read_text())["data"]["kind"] == "hub"


def test_distilled_model_card_holds_the_printed_figures_and_both_commands(tmp_path, pair, corpus):
    from huggingface_hub import ModelCard

    teacher, _ = pair
    (teacher / "README.md").write_text("---\nlicense: apache-2.0\n---\n# teacher\n")
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps({
        "serving": {"context_tokens": 4096, "batch": 2, "weight_dtype": "bfloat16"},
        "candidates": [{"rank": 1, "drop_blocks": [1], "memory": {"weights_bytes": 900, "total_bytes": 999}}],
    }))  # fmt: skip
    student = tmp_path / "pruned"
    pruned = CliRunner().invoke(
        app, ["prune", str(teacher), "--candidate", str(candidates), "--out", str(student)]
    )
    assert pruned.exit_code == 0, pruned.output
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, [*args((teacher, student), corpus, out)[:-2], "--steps", "4", "--eval-every", "4", "--out", str(out)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    card = ModelCard.load(out / "final" / "README.md")
    assert card.data.base_model == str(teacher) and card.data.license == "apache-2.0"
    assert "distilled" in card.data.tags and card.data.pipeline_tag == "text-generation"
    printed = {line.split("│")[1].strip(): line.split("│")[2].strip()
               for line in result.output.splitlines() if line.count("│") >= 3}  # fmt: skip
    record = json.loads((out / "final" / "minitron.json").read_text())
    for key, value in record["heldout_after"].items():
        if key.startswith("eval_") and key != "eval_loss":
            before = record["heldout_before"][key]
            assert printed[key.replace("eval_", "held-out ")] == f"{value:.4f}"
            assert f"| {key.removeprefix('eval_')} | {before:.4f} | {value:.4f} |" in card.text
    blocks = record["provenance"]["teacher"]["blocks"]
    assert f"| blocks | {blocks} | {blocks - 1} |" in card.text
    assert f"minitron prune {teacher} --out {student} --candidate {candidates}" in card.text
    (distill_line,) = [line for line in card.text.splitlines() if line.startswith("minitron distill")]
    assert (
        distill_line.startswith(f"minitron distill {teacher} {student} ")
        and f"--data {corpus}" in distill_line
    )
    assert "999 bytes) at context 4096, batch 2" in card.text
