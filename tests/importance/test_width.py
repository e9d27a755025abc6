import math

import pytest
import torch
from importance_helpers import TINY, calibration_batches, padded_batches

from minitron.importance.width import AGGREGATIONS, score_width


def _capture(model, batches):
    """Activations seen by the full HF forward: {key: [(B, T, C) per batch]}, captured independently."""
    layers = model.model.layers
    d_inner = TINY.mamba_inner
    captured, handles = {}, []

    def keep(key, a):
        captured.setdefault(key, []).append(a.detach().float().clone())

    for i, block in enumerate(layers):
        handles.append(block.norm.register_forward_hook(lambda m, a, out, i=i: keep(f"hidden.{i}", out)))
        kind = TINY.pattern[i]
        if kind == "-":
            handles.append(
                block.mixer.down_proj.register_forward_pre_hook(lambda m, a, i=i: keep(f"ffn.{i}", a[0]))
            )
        elif kind == "*":
            handles.append(
                block.mixer.o_proj.register_forward_pre_hook(lambda m, a, i=i: keep(f"attn.{i}", a[0]))
            )
        else:
            handles.append(
                block.mixer.in_proj.register_forward_hook(
                    lambda m, a, out, i=i: keep(f"mamba.{i}", out[..., d_inner : 2 * d_inner])
                )
            )
    with torch.no_grad():
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    return captured


def _reference_channel_scores(acts, masks, aggregation):
    """Plain python: per sample a statistic over real tokens, then over samples; per channel."""
    over_seq, over_batch = AGGREGATIONS[aggregation]
    per_channel = None
    for a, mask in zip(acts, masks, strict=True):
        B, T, C = a.shape
        rows = a.tolist()
        for b in range(B):
            tokens = [t for t in range(T) if mask is None or mask[b, t] == 1]
            if not tokens:
                continue
            if per_channel is None:
                per_channel = [[] for _ in range(C)]
            for c in range(C):
                xs = [rows[b][t][c] for t in tokens]
                if over_seq == "mean":
                    stat = sum(abs(x) for x in xs) / len(xs)
                elif over_seq == "l2":
                    stat = math.sqrt(sum(x * x for x in xs))
                else:
                    m = sum(xs) / len(xs)
                    stat = sum((x - m) ** 2 for x in xs) / len(xs)
                per_channel[c].append(stat)
    out = []
    for stats in per_channel:
        if over_batch == "l2":
            out.append(math.sqrt(sum(s * s for s in stats)))
        elif over_batch == "mean":
            out.append(sum(stats) / len(stats))
        else:
            m = sum(stats) / len(stats)
            out.append(sum((s - m) ** 2 for s in stats) / len(stats))
    return torch.tensor(out)


@pytest.mark.parametrize("aggregation", list(AGGREGATIONS))
@pytest.mark.parametrize("padding", [False, True], ids=["no-padding", "padding"])
def test_width_scores_match_plain_python_over_captured_activations(model, aggregation, padding):
    batches = padded_batches() if padding else [(ids, None) for ids in calibration_batches(n=2, batch=2)]
    got = score_width(model, batches, aggregation)
    captured = _capture(model, batches)
    masks = [mask for _, mask in batches]

    def ref(key):
        return _reference_channel_scores(captured[key], masks, aggregation)

    hidden = sum(ref(f"hidden.{i}") for i in range(TINY.n_blocks))
    torch.testing.assert_close(got["hidden"], hidden, rtol=1e-4, atol=1e-6)
    for i, kind in enumerate(TINY.pattern):
        if kind == "-":
            torch.testing.assert_close(got[f"ffn.{i}"], ref(f"ffn.{i}"), rtol=1e-4, atol=1e-6)
        elif kind == "*":
            heads = ref(f"attn.{i}").view(TINY.attn_heads, TINY.head_dim).norm(dim=1)
            torch.testing.assert_close(got[f"attn_heads.{i}"], heads, rtol=1e-4, atol=1e-6)
        else:
            s = ref(f"mamba.{i}").view(TINY.mamba_heads, TINY.mamba_head_dim)
            torch.testing.assert_close(got[f"mamba.{i}"], s, rtol=1e-4, atol=1e-6)
    expected_keys = {"hidden"} | {
        f"{ {'M': 'mamba', '-': 'ffn', '*': 'attn_heads'}[k] }.{i}" for i, k in enumerate(TINY.pattern)
    }
    assert set(got) == expected_keys


def test_padding_tokens_do_not_count(model):
    """Changing the ids under the padding mask leaves every score unchanged."""
    batches = padded_batches()
    scrambled = [(ids.masked_fill(mask == 0, 17), mask) for ids, mask in batches]
    a, b = score_width(model, batches), score_width(model, scrambled)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_scores_in_eval_mode_and_restores_training_mode(model):
    batches = calibration_batches(n=1)
    expected = score_width(model, batches)
    model.train()
    got = score_width(model, batches)
    assert model.training
    assert not any(
        h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
    )
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_bfloat16_model_scores_close_to_float32(model):
    batches = calibration_batches(n=1)
    expected = score_width(model, batches)
    got = score_width(model.to(torch.bfloat16), batches)
    for key in expected:
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key], expected[key], rtol=0.1, atol=0.05)
