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


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread while these tests run: tiny ops on a shared 2-core machine are much
    faster without OpenMP threads waiting on each other. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
