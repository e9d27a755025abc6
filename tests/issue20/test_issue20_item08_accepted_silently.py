"""Issue 20 item 8: inputs that were accepted silently are refused (or noted) before any work."""

from __future__ import annotations

import json

import pytest
from issue20_helpers import invoke, one_error_line

from minitron.errors import MinitronError
from minitron.model.load import resolve_model
from minitron.prune.target import candidate_rows


@pytest.fixture(scope="module")
def twelve_b_candidates(tmp_path_factory):
    out = tmp_path_factory.mktemp("search12b")
    result = invoke("search", "nemotron-nano-12b-v2-base", "--budget", "22GiB", "--layers", "56", "--no-eval",
                    "--top", 3, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "candidates.json"


def test_candidates_of_another_model_are_refused(twelve_b_candidates, tmp_path):
    line = one_error_line(
        invoke("prune", "tiny", "--candidate", twelve_b_candidates, "--out", tmp_path / "p")
    )
    assert "searched on nemotron-nano-12b-v2-base" in line and not (tmp_path / "p").exists()
    # control: the file is accepted for the model it was searched on
    assert len(candidate_rows(twelve_b_candidates, resolve_model("nemotron-nano-12b-v2-base"))) == 3


def test_candidates_of_other_weights_are_refused(twelve_b_candidates, tmp_path):
    doc = json.loads(twelve_b_candidates.read_text())
    doc["source"] = {**doc["source"], "architecture": resolve_model("tiny").architecture.summary(),
                     "model": "a-retrained-tiny", "fingerprint": "0123456789abcdef"}  # fmt: skip
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(MinitronError, match="searched on other weights"):
        candidate_rows(other, resolve_model("tiny"))


def test_wrong_format_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"format": "minitron-scores", "candidates": [{"rank": 1}]}))
    line = one_error_line(invoke("prune", "tiny", "--candidate", path, "--out", tmp_path / "p"))
    assert "format 'minitron-scores' is not 'minitron-candidates'" in line


def test_teacher_topk_above_the_vocabulary(tmp_path):
    line = one_error_line(invoke("distill", "tiny", "tiny", "--teacher-topk", 5000, "--out", tmp_path / "d"))
    assert "--teacher-topk 5000 is not below the teacher's vocabulary of 4,096" in line
    assert not (tmp_path / "d").exists()


def test_compare_top_above_the_candidates_is_noted(tmp_path, capsys):
    from minitron.distill.compare import _top_rows

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"candidates": [{"rank": r} for r in range(1, 7)]}))
    assert len(_top_rows(path, 99, None)) == 6
    assert capsys.readouterr().err.strip() == f"note: --top 99 but {path} holds 6 candidates; comparing all 6"
    assert len(_top_rows(path, 6, None)) == 6 and capsys.readouterr().err == ""


def test_bad_storage_url_leaves_nothing(tmp_path):
    out = tmp_path / "search"
    sizes = [f"--{axis}" for axis in ("hidden", "ffn", "mamba-heads", "mamba-head-dim")]
    argv = [
        "search",
        "tiny",
        "--budget",
        "1GiB",
        "--context",
        "8k",
        "--storage",
        "nosuchdb://x/y",
        "--out",
        out,
    ]
    for flag in sizes:
        argv += [flag, "source"]
    line = one_error_line(invoke(*argv))
    assert "--storage" in line and not out.exists()


def test_compare_chunk_tokens_zero_before_work_and_the_fixed_command_runs(tmp_path):
    out = tmp_path / "compare"
    line = one_error_line(invoke("compare", "tiny", "nothing.json", "--chunk-tokens", 0, "--out", out))
    assert "--chunk-tokens must be positive" in line and not out.exists()
    # a compare_config.json left by an attempt that never started a candidate does not block another
    from minitron.distill.compare import _forget_unstarted
    from minitron.runs import claim

    def start(settings):
        _forget_unstarted(out, settings)
        return claim(out, "compare_config.json", settings, "compare")

    assert start({"chunk_tokens": 0}) is False
    assert start({"chunk_tokens": 256}) is False  # the unstarted one is replaced, not refused
    assert json.loads((out / "compare_config.json").read_text()) == {"chunk_tokens": 256}
    (out / "rank-1" / "checkpoints").mkdir(parents=True)
    with pytest.raises(MinitronError, match=r"other settings \(chunk_tokens\)"):
        start({"chunk_tokens": 128})  # a started compare is kept
