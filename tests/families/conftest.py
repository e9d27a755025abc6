"""Tiny random dense models, one per Llama-family variant (see tests/tiny_models.py)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import DENSE_CONFIGS, dense_arch, randomize_

from minitron.model.load import build_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread is faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
