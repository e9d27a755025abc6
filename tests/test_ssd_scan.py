"""minitron's CPU Mamba-2 scan equals transformers' own, in values and gradients, alone and in a model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY, randomize_

from minitron.model import ssd_scan
from minitron.model.load import build_model


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(seed, b, L, h, p, g, n):
    gen = torch.Generator().manual_seed(seed)
    shapes = dict(x=(b, L, h, p), dt=(b, L, h), B=(b, L, g, n), C=(b, L, g, n), D=(h,), dt_bias=(h,))
    t = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    t["A"] = -torch.rand(h, generator=gen) * 2
    return {k: v.requires_grad_() for k, v in t.items()}


@pytest.mark.parametrize(
    "b, L, h, p, g, n, chunk, initial, limit",
    [
        (2, 64, 8, 4, 2, 8, 16, False, (0.0, float("inf"))),
        (3, 37, 8, 4, 2, 8, 8, True, (0.0, float("inf"))),  # L not a multiple of the chunk
        (1, 50, 6, 3, 3, 5, 32, True, (0.01, 2.0)),  # one padded chunk, clamped dt
        (2, 16, 4, 2, 1, 4, 16, False, (0.0, float("inf"))),  # one group, exactly one chunk
    ],
)
def test_scan_equals_transformers_in_values_and_gradients(b, L, h, p, g, n, chunk, initial, limit):
    t = _inputs(0, b, L, h, p, g, n)
    start = torch.randn(b, h, p, n) if initial else None
    kwargs = dict(D=t["D"], dt_bias=t["dt_bias"], dt_softplus=True, dt_limit=limit, return_final_states=True)
    args = (t["x"], t["dt"], t["A"], t["B"], t["C"], chunk)
    results = []
    for scan in (ssd_scan.transformers_scan(), ssd_scan.chunk_scan):
        y, final = scan(*args, initial_states=start, **kwargs)
        loss = (y * torch.cos(y)).sum() + (final**2).sum()  # a non-trivial upstream gradient
        results.append((y, final, torch.autograd.grad(loss, list(t.values()))))
    (y0, f0, g0), (y1, f1, g1) = results
    assert f1.is_contiguous()  # transformers .view()s the cached state in its decode step
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(f1, f0, rtol=1e-4, atol=1e-4)
    for name, a, c in zip(t, g1, g0, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-3 * c.abs().max().item(), msg=name)


def test_model_logits_and_generation_unchanged_by_the_fast_scan():
    model = randomize_(build_model(TINY, seed=0), seed=0)  # build_model enables the fast scan
    ids = torch.randint(3, TINY.vocab, (2, 29), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model(input_ids=ids).logits
        fast_gen = model.generate(input_ids=ids[:1, :9], max_new_tokens=6, do_sample=False)
        ssd_scan.disable()
        try:
            slow = model(input_ids=ids).logits
            slow_gen = model.generate(input_ids=ids[:1, :9], max_new_tokens=6, do_sample=False)
        finally:
            ssd_scan.enable()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    assert torch.equal(fast_gen, slow_gen)


def test_enable_is_idempotent_and_disable_restores_transformers():
    from transformers.models.nemotron_h import modeling_nemotron_h

    assert ssd_scan.enable() and ssd_scan.enable()
    assert modeling_nemotron_h.mamba2_chunk_scan is ssd_scan.chunk_scan
    ssd_scan.disable()
    assert modeling_nemotron_h.mamba2_chunk_scan is ssd_scan.transformers_scan()
    assert modeling_nemotron_h.mamba2_chunk_scan is not ssd_scan.chunk_scan
    ssd_scan.enable()
