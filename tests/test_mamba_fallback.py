"""minitron's CPU Mamba-2 scan equals transformers' own, in values and gradients, alone and in a model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY, randomize_

from minitron.model import mamba_fallback
from minitron.model.load import build_model


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
    for scan in (mamba_fallback.transformers_scan(), mamba_fallback.chunk_scan):
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
        mamba_fallback.disable()
        try:
            slow = model(input_ids=ids).logits
            slow_gen = model.generate(input_ids=ids[:1, :9], max_new_tokens=6, do_sample=False)
        finally:
            mamba_fallback.enable()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    assert torch.equal(fast_gen, slow_gen)


def test_enable_is_idempotent_and_disable_restores_transformers():
    from transformers.models.nemotron_h import modeling_nemotron_h

    assert mamba_fallback.enable() and mamba_fallback.enable()
    assert modeling_nemotron_h.mamba2_chunk_scan is mamba_fallback.chunk_scan
    mamba_fallback.disable()
    assert modeling_nemotron_h.mamba2_chunk_scan is mamba_fallback.transformers_scan()
    assert modeling_nemotron_h.mamba2_chunk_scan is not mamba_fallback.chunk_scan
    mamba_fallback.enable()


def test_transformers_fallback_warnings_become_one_note_of_ours():
    """A CPU run says once, in our words, that the CUDA kernels are optional (fresh process: the
    warnings are once-per-process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import torch\n"
        "from minitron.model.load import build_model\n"
        "from tiny_models import TINY\n"
        "m = build_model(TINY, seed=0)\n"
        "ids = torch.randint(3, 90, (1, 12))\n"
        "m(input_ids=ids); m.generate(input_ids=ids, max_new_tokens=3, do_sample=False)\n"
    )
    tests_dir = str(Path(__file__).parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "falling back to its reference PyTorch implementation" not in out.stderr
    assert out.stderr.count(mamba_fallback.FALLBACK_NOTE) == 1, out.stderr
