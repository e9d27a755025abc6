"""Fixtures for the importance tests: a random tiny model, and a checkpoint with a tokenizer."""

from __future__ import annotations

import pytest
from importance_helpers import VOCAB, random_tiny_model


@pytest.fixture
def model():
    return random_tiny_model()


DOCUMENTS = [
    f"def f{i}(x):\n    return x * {i} + {i % 7}  # document {i} of a small corpus\n" for i in range(400)
]


@pytest.fixture(scope="session")
def scored_checkpoint(tmp_path_factory):
    """A checkpoint directory (random tiny model + byte-level BPE tokenizer) and a JSONL file of data."""
    import json

    from minitron.data import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("score")
    path = root / "tiny-ckpt"
    random_tiny_model().save_pretrained(path)
    train_bpe_tokenizer(DOCUMENTS, VOCAB).save_pretrained(path)
    data = root / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in DOCUMENTS))
    return path, data
