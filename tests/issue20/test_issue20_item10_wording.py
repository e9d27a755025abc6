"""Issue 20 item 10: error wording a newcomer tripped over."""

from __future__ import annotations

import json
import re

from issue20_helpers import distill_argv, invoke, one_error_line


def test_a_directory_given_for_a_file_says_so(tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    for argv in (
        ["search", "nemotron-nano-12b-v2-base", "--budget", "22GiB", "--no-eval", "--scores", folder,
         "--out", tmp_path / "s"],
        ["prune", "tiny", "--candidate", folder, "--out", tmp_path / "p"],
        ["run", folder],
    ):  # fmt: skip
        line = one_error_line(invoke(*argv))
        assert "is a directory, not a" in line and "no such" not in line, line


def test_out_under_a_file_names_the_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = one_error_line(invoke("estimate", "tiny", "--out", afile / "x.json"))
    assert f"{afile} is a file, not a directory" in line and "File exists" not in line


def test_a_list_for_teacher_says_it_must_be_one(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text('teacher = ["tiny", "tiny"]\n')
    line = one_error_line(invoke("run", run, "--out", tmp_path / "r"))
    assert (
        "teacher must be one checkpoint directory or built-in name (a string), got ['tiny', 'tiny']" in line
    )


def test_ctrl_c_is_said_once(tmp_path, monkeypatch):
    import minitron.distill.trainer as trainer

    calls = []
    real = trainer.loss_sums

    def interrupt_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "loss_sums", interrupt_second_step)
    result = invoke("train", "tiny", "--steps", 3, "--seq-len", 32, "--batch-size", 2, "--eval-batches", 1,
                    "--save-every", 0, "--device", "cpu", "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 130, result.output
    said = [line for line in result.output.splitlines() if "interrupted" in line]
    assert len(said) == 1, result.output  # said once, by the CLI, with what was kept
    assert re.fullmatch(r"interrupted: checkpoint of step \d saved; --resume continues", said[0])


def test_final_provenance_names_the_student(tmp_path):
    assert invoke(*distill_argv(tmp_path / "d")).exit_code == 0
    model = json.loads((tmp_path / "d" / "final" / "minitron.json").read_text())["model"]
    assert model["model"] == "tiny" and len(model["fingerprint"]) == 16 and model["params"] > 0
