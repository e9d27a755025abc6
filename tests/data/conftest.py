"""A small byte-level BPE tokenizer trained here (never downloaded), shared by the data tests."""

from __future__ import annotations

import pytest

from minitron.data import train_bpe_tokenizer

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.\n",
    "import os\nprint(os.getcwd())\n",
    "naïve café — unicode text ✓\n",
] * 4


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, vocab_size=300)
