"""The run file: keys are the stages' own options; mistakes are one clear line."""

from __future__ import annotations

import pytest

from minitron.errors import MinitronError
from minitron.pipeline.config import Option, command_args, load_run_config, resolve

OPTIONS = {
    "score": {
        "samples": Option("samples", "--samples"),
        "seq_len": Option("seq_len", "--seq-len"),
        "width": Option("width", "--width", True, "--no-width"),
        "data": Option("data", "--data"),
    },
    "search": {
        "budget": Option("budget", "--budget"),
        "layers": Option("layers", "--layers"),
        "data": Option("data", "--data"),
        "no_eval": Option("no_eval", "--no-eval", True),
    },
    "compare": {"top": Option("top", "--top"), "steps": Option("steps", "--steps")},
    "prune": {"dtype": Option("dtype", "--dtype")},
    "distill": {"steps": Option("steps", "--steps"), "seq_len": Option("seq_len", "--seq-len"),
                "data": Option("data", "--data")},
    "evaluate": {"limit": Option("limit", "--limit"), "tasks": Option("tasks", "--tasks")},
}  # fmt: skip


def test_top_level_keys_reach_every_stage_that_has_them_and_sections_win():
    config = resolve(
        {"teacher": "tiny", "data": "corpus.jsonl", "seq-len": 128,
         "score": {"seq_len": 64, "width": False}, "search": {"layers": [54, 56]}, "distill": {"steps": 9}},
        OPTIONS,
    )  # fmt: skip
    assert config.stages["score"] == {"data": "corpus.jsonl", "seq_len": 64, "width": False}
    assert config.stages["distill"] == {"data": "corpus.jsonl", "seq_len": 128, "steps": 9}
    assert "seq_len" not in config.stages["search"] and config.stages["search"]["data"] == "corpus.jsonl"
    assert config.stages["prune"] == {} and config.stages["evaluate"] == {}
    assert str(config.out) == "runs/run" and config.eval_tasks is None and not config.enabled("evaluate")


def test_values_become_the_command_line_words():
    assert command_args(OPTIONS["search"]["layers"], [54, 56]) == ["--layers", "54,56"]
    assert command_args(OPTIONS["score"]["width"], False) == ["--no-width"]
    assert command_args(OPTIONS["score"]["width"], True) == ["--width"]
    assert command_args(OPTIONS["search"]["no_eval"], False) == []
    assert command_args(OPTIONS["search"]["budget"], "17MiB") == ["--budget", "17MiB"]
    assert command_args(OPTIONS["score"]["samples"], 16) == ["--samples", "16"]


def test_eval_tasks_is_a_top_level_key_and_the_command_line_wins():
    assert resolve({"teacher": "t", "eval_tasks": "a,b"}, OPTIONS).eval_tasks == "a,b"
    config = resolve({"teacher": "t", "eval-tasks": ["a", "./b.yaml"], "limit": 5}, OPTIONS)
    assert config.eval_tasks == "a,./b.yaml" and config.enabled("evaluate")
    assert config.stages["evaluate"] == {"limit": 5}
    assert resolve({"teacher": "t", "eval-tasks": "a"}, OPTIONS, eval_tasks="c").eval_tasks == "c"


def test_compare_off_with_top_zero():
    assert not resolve({"teacher": "t", "compare": {"top": 0}}, OPTIONS).enabled("compare")
    assert resolve({"teacher": "t"}, OPTIONS).enabled("compare")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, r"set teacher = "),
        ({"teacher": "t", "scroe": {}}, r"unknown section \[scroe\] \(did you mean 'score'\?\)"),
        ({"teacher": "t", "search": {"trails": 3}}, r"\[search\] has no option 'trails'"),
        (
            {"teacher": "t", "score": {"sample": 3}},
            r"\[score\] has no option 'sample' \(did you mean 'samples'\?\)",
        ),
        ({"teacher": "t", "budgte": "1GiB"}, r"no stage takes 'budgte' \(did you mean 'budget'\?\)"),
        ({"teacher": "t", "search": {"out": "x"}}, r"'out' is set by the run itself"),
        ({"teacher": "t", "prune": {"rank": 2}}, r"'rank' is set by the run itself"),
        ({"teacher": "t", "score": {"width": "yes"}}, r"\[score\] width: must be true or false"),
        ({"teacher": "t", "search": {"layers": []}}, r"a list must hold plain values"),
        ({"teacher": "t", "search": {"budget": True}}, r"takes a value"),
        ({"teacher": "t", "tasks": "x"}, r"'tasks' is set by the run itself"),
        (
            {"teacher": "t", "evaluate": {"tasks": "x"}},
            r"\[evaluate\] tasks: set eval-tasks at the top level",
        ),
        ({"teacher": "t", "eval-tasks": 3}, r"eval-tasks takes task names or YAML paths"),
    ],
)
def test_mistakes_are_one_clear_error(raw, message):
    with pytest.raises(MinitronError, match=message):
        resolve(raw, OPTIONS)


def test_files(tmp_path):
    with pytest.raises(MinitronError, match="no such run file"):
        load_run_config(tmp_path / "missing.toml", OPTIONS)
    bad = tmp_path / "bad.toml"
    bad.write_text("teacher = [unclosed\n")
    with pytest.raises(MinitronError, match="not a valid TOML file"):
        load_run_config(bad, OPTIONS)
    good = tmp_path / "good.toml"
    good.write_text('teacher = "tiny"\nout = "runs/x"\n[distill]\nsteps = 3\n')
    config = load_run_config(good, OPTIONS, out=str(tmp_path / "elsewhere"))
    assert config.out == tmp_path / "elsewhere" and config.stages["distill"] == {"steps": 3}
