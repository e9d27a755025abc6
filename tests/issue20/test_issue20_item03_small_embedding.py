"""Issue 20 item 3: an embedding smaller than the tokenizer is one error line in score, train and evaluate
(before: an IndexError in score and train, silently scored garbage in evaluate)."""

from __future__ import annotations

import pytest
from issue20_helpers import invoke, one_error_line, small_embedding_checkpoint

from minitron.errors import MinitronError
from minitron.model.load import load_tokenizer, resolve_model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_embedding_checkpoint(tmp_path_factory.mktemp("ckpt") / "small-embedding")


def test_load_tokenizer_refuses_it(small):
    with pytest.raises(MinitronError, match="tokenizer has 4,096 tokens but the embedding only 3,000 rows"):
        load_tokenizer(resolve_model(small))
    assert len(load_tokenizer(resolve_model("tiny"))) == 4096  # control: the teacher itself loads


def test_score(small, tmp_path):
    line = one_error_line(
        invoke("score", small, "--samples", 2, "--seq-len", 32, "--out", tmp_path / "s.safetensors")
    )
    assert "embedding only 3,000 rows" in line and not (tmp_path / "s.safetensors").exists()


def test_train(small, tmp_path):
    line = one_error_line(invoke("train", small, "--steps", 1, "--seq-len", 32, "--out", tmp_path / "run"))
    assert "embedding only 3,000 rows" in line and not (tmp_path / "run").exists()


def test_evaluate(small, tmp_path):
    pytest.importorskip("lm_eval")
    task = tmp_path / "t.yaml"
    task.write_text("task: never_run\n")
    line = one_error_line(invoke("evaluate", small, "--tasks", task, "--out", tmp_path / "eval"))
    assert "embedding only 3,000 rows" in line
