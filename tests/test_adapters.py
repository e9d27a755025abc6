"""Every family's block-by-block run (depth scoring, search, distillation) is the model's own forward."""

import pytest
import torch
from tiny_models import DENSE_CONFIGS, dense_arch, randomize_

from minitron.model.adapters import adapter_for
from minitron.model.load import build_model


def _run_blocks(model, ids, mask):
    adapter = adapter_for(model)
    with torch.no_grad():
        ctx = adapter.start(model, ids, mask)
        hidden = ctx.hidden
        for block in adapter.blocks(model):
            hidden = adapter.run_block(block, hidden, ctx)
        return adapter.logits(model, hidden)


def _padded(ids):
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    return mask


@pytest.mark.parametrize("padding", [False, True])
def test_blocks_run_one_by_one_reproduce_model_logits(tiny_model, token_batch, padding):
    mask = _padded(token_batch) if padding else None
    with torch.no_grad():
        expected = tiny_model(token_batch, attention_mask=mask).logits
    torch.testing.assert_close(_run_blocks(tiny_model, token_batch, mask), expected, rtol=0, atol=0)


def test_pattern_matches_architecture(tiny_model, tiny_arch):
    assert adapter_for(tiny_model).pattern(tiny_model) == tiny_arch.pattern


@pytest.mark.parametrize("name", DENSE_CONFIGS)
@pytest.mark.parametrize("padding", [False, True])
def test_dense_layers_run_one_by_one_reproduce_model_logits(name, padding, token_batch):
    arch = dense_arch(name)
    model = randomize_(build_model(arch, seed=0), seed=0)
    assert adapter_for(model).pattern(model) == arch.pattern == "D" * arch.n_blocks
    mask = _padded(token_batch) if padding else None
    with torch.no_grad():
        expected = model(token_batch, attention_mask=mask).logits
    torch.testing.assert_close(_run_blocks(model, token_batch, mask), expected, rtol=0, atol=0)
