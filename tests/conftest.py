"""Tiny random NemotronH models built here, never downloaded."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY, randomize_

from minitron.model.arch import Architecture
from minitron.model.load import build_model


@pytest.fixture
def tiny_arch() -> Architecture:
    return TINY


@pytest.fixture
def tiny_model():
    return randomize_(build_model(TINY, seed=0), seed=0)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    """A complete HF checkpoint directory of the tiny random model."""
    path = tmp_path / "tiny-ckpt"
    tiny_model.save_pretrained(path)
    return path


@pytest.fixture
def token_batch():
    return torch.randint(3, TINY.vocab, (2, 24), generator=torch.Generator().manual_seed(1))
