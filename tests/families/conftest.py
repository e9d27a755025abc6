"""Tiny random dense models, one per Llama-family variant (see tests/tiny_models.py)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import DENSE_CONFIGS, dense_arch, randomize_

from minitron.model.load import build_model


@pytest.fixture(params=list(DENSE_CONFIGS))
def family_name(request) -> str:
    return request.param


@pytest.fixture
def dense(family_name):
    """(architecture, random model) of one dense variant."""
    arch = dense_arch(family_name)
    return arch, randomize_(build_model(arch, seed=0), seed=0)


@pytest.fixture
def ids():
    return torch.randint(3, 97, (2, 20), generator=torch.Generator().manual_seed(1))
