import torch

from minitron.model.adapters import adapter_for


def test_blocks_run_one_by_one_reproduce_model_logits(tiny_model, token_batch):
    adapter = adapter_for(tiny_model)
    with torch.no_grad():
        expected = tiny_model(token_batch).logits
        ctx = adapter.start(tiny_model, token_batch, None)
        hidden = ctx.hidden
        for block in adapter.blocks(tiny_model):
            hidden = adapter.run_block(block, hidden, ctx)
        got = adapter.logits(tiny_model, hidden)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_pattern_matches_architecture(tiny_model, tiny_arch):
    assert adapter_for(tiny_model).pattern(tiny_model) == tiny_arch.pattern


def test_padding_mask_is_honoured(tiny_model, token_batch):
    adapter = adapter_for(tiny_model)
    mask = torch.ones_like(token_batch)
    mask[0, :5] = 0
    with torch.no_grad():
        expected = tiny_model(token_batch, attention_mask=mask).logits
        ctx = adapter.start(tiny_model, token_batch, mask)
        hidden = ctx.hidden
        for block in adapter.blocks(tiny_model):
            hidden = adapter.run_block(block, hidden, ctx)
        got = adapter.logits(tiny_model, hidden)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
