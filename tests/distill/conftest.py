"""A tiny random model with a real (small) tokenizer and a small JSONL corpus, for loop tests."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from minitron.data import train_bpe_tokenizer
from minitron.model.load import build_model

# The project's tests/conftest.py is shadowed by this file's module name; load it by path.
_spec = importlib.util.spec_from_file_location("project_conftest", Path(__file__).parents[1] / "conftest.py")
_project = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_project)
TINY, randomize_ = _project.TINY, _project.randomize_

TEXTS = [f"def f{i}(x):\n    return x * {i} + {i % 3}\n" for i in range(80)]


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


@pytest.fixture
def make_model(tokenizer):
    arch = dataclasses.replace(TINY, vocab=len(tokenizer))

    def make(seed: int = 0):
        return randomize_(build_model(arch, seed=seed), seed=seed)

    return make


@pytest.fixture
def pair(tmp_path, tokenizer, make_model):
    """A teacher and a different student sharing one tokenizer, as checkpoints."""
    paths = []
    for name, seed in (("teacher", 0), ("student", 1)):
        make_model(seed).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        paths.append(tmp_path / name)
    return paths
