"""KD losses: properties of the divergences, masking, and chunked projection = the plain full-logit loss."""

from __future__ import annotations

import pytest
import torch

from minitron.distill.losses import IGNORE, KDLoss, chunked_kd_sums, divergence, kd_sums
from minitron.errors import MinitronError

KINDS = ["forward_kl", "reverse_kl", "jsd"]


def logits(*shape, seed=0, scale=2.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference(kind, s, t, tau=1.0, beta=0.5):
    """Divergences written out from their definitions, one position at a time, in float64."""
    out = []
    for srow, trow in zip(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), strict=True):
        p, q = torch.softmax(trow / tau, -1), torch.softmax(srow / tau, -1)
        if kind == "forward_kl":
            d = (p * (p / q).log()).sum()
        elif kind == "reverse_kl":
            d = (q * (q / p).log()).sum()
        else:
            m = beta * p + (1 - beta) * q
            d = beta * (p * (p / m).log()).sum() + (1 - beta) * (q * (q / m).log()).sum()
        out.append(d * tau**2)
    return torch.stack(out).reshape(s.shape[:-1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
def test_divergences_match_their_definitions(kind, tau):
    s, t = logits(3, 5, 11, seed=1), logits(3, 5, 11, seed=2)
    got = divergence(s, t, kind, tau=tau, beta=0.3 if kind == "jsd" else 0.5)
    torch.testing.assert_close(got.double(), reference(kind, s, t, tau, 0.3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_for_identical_logits_positive_otherwise(kind):
    t = logits(4, 7, 19, seed=3)
    torch.testing.assert_close(divergence(t, t, kind), torch.zeros(4, 7), atol=1e-6, rtol=0)
    # A constant shift is the same distribution.
    torch.testing.assert_close(divergence(t + 5.0, t, kind), torch.zeros(4, 7), atol=1e-5, rtol=0)
    assert (divergence(logits(4, 7, 19, seed=4), t, kind) > 1e-4).all()


def test_forward_and_reverse_kl_swap_arguments_and_jsd_is_symmetric_at_half():
    s, t = logits(6, 13, seed=5), logits(6, 13, seed=6)
    torch.testing.assert_close(divergence(s, t, "reverse_kl"), divergence(t, s, "forward_kl"))
    torch.testing.assert_close(divergence(s, t, "jsd"), divergence(t, s, "jsd"))
    assert not torch.allclose(divergence(s, t, "jsd", beta=0.2), divergence(t, s, "jsd", beta=0.2))


def test_high_temperature_flattens_both_distributions():
    s, t = logits(8, 17, seed=7), logits(8, 17, seed=8)
    # Without the tau^2 factor the divergence falls like 1/tau^2; with it, it tends to a constant.
    raw = [(divergence(s, t, tau=tau) / tau**2).mean().item() for tau in (1, 4, 16)]
    assert raw[0] > raw[1] > raw[2]
    scaled = [divergence(s, t, tau=tau).mean().item() for tau in (16, 64)]
    assert scaled[0] == pytest.approx(scaled[1], rel=0.05)


def test_kd_sums_mask_ignored_positions_and_add_ce():
    s, t = logits(10, 23, seed=9).float(), logits(10, 23, seed=10).float()
    labels = torch.randint(0, 23, (10,), generator=torch.Generator().manual_seed(0))
    labels[[2, 7]] = IGNORE
    real = labels != IGNORE
    sums = kd_sums(s, t, labels, KDLoss(ce_weight=0.25))
    kd = divergence(s, t)[real].sum()
    ce = torch.nn.functional.cross_entropy(s[real], labels[real], reduction="sum")
    tce = torch.nn.functional.cross_entropy(t[real], labels[real], reduction="sum")
    torch.testing.assert_close(sums, torch.stack([kd + 0.25 * ce, kd, ce, tce]))
    # Garbage at a masked position changes nothing.
    s2 = s.clone()
    s2[2] = 1e4
    torch.testing.assert_close(kd_sums(s2, t, labels, KDLoss(ce_weight=0.25)), sums)


def test_topk_teacher_with_every_token_is_the_full_forward_kl():
    s, t = logits(9, 15, seed=11).float(), logits(9, 15, seed=12).float()
    labels = torch.zeros(9, dtype=torch.long)
    full = kd_sums(s, t, labels, KDLoss(tau=2.0))
    torch.testing.assert_close(kd_sums(s, t, labels, KDLoss(tau=2.0, teacher_topk=15)), full)
    # Top-k collapses the tail: a lower bound.
    assert kd_sums(s, t, labels, KDLoss(tau=2.0, teacher_topk=3))[1] < full[1]


@pytest.mark.parametrize(
    "loss",
    [
        KDLoss(),
        KDLoss(divergence="reverse_kl", tau=2.0),
        KDLoss(divergence="jsd", beta=0.3, ce_weight=0.5),
        KDLoss(teacher_topk=8, ce_weight=1.0),
    ],  # fmt: skip
)
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_equals_plain_in_value_and_gradients(loss, chunk):
    n, hs, ht, vocab = 64, 12, 20, 50
    g = torch.Generator().manual_seed(13)
    h_s = torch.randn(n, hs, generator=g, dtype=torch.float64, requires_grad=True)
    w_s = torch.randn(vocab, hs, generator=g, dtype=torch.float64, requires_grad=True)
    h_t, w_t = (
        torch.randn(n, ht, generator=g, dtype=torch.float64),
        torch.randn(vocab, ht, generator=g, dtype=torch.float64),
    )
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[::9] = IGNORE
    labels[10:20] = IGNORE  # a whole masked chunk at chunk=10 sizes

    def plain():
        return kd_sums(h_s @ w_s.T, h_t @ w_t.T, labels, loss)

    def chunked():
        return chunked_kd_sums(h_s, w_s, h_t, w_t, labels, loss, chunk_tokens=chunk)

    values, grads = [], []
    for fn in (plain, chunked):
        out = fn()
        (out[0] * 0.37).backward()  # a non-unit upstream gradient
        values.append(out.detach())
        grads.append((h_s.grad.clone(), w_s.grad.clone()))
        h_s.grad = w_s.grad = None
    torch.testing.assert_close(values[1], values[0].float(), rtol=1e-6, atol=1e-6)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)
    # Negative control: a perturbed teacher changes the gradient.
    chunked_kd_sums(h_s, w_s, h_t + 0.1, w_t, labels, loss, chunk_tokens=chunk)[0].backward()
    assert not torch.allclose(h_s.grad * 0.37, grads[0][0], rtol=1e-3)


def test_chunked_keeps_no_full_logits_alive():
    """After the forward, autograd holds no (n, vocab) tensor: only inputs for the recomputation."""
    n, hidden, vocab = 512, 8, 4096
    h_s = torch.randn(n, hidden, requires_grad=True)
    w_s = torch.randn(vocab, hidden, requires_grad=True)
    h_t, w_t = torch.randn(n, hidden), torch.randn(vocab, hidden)
    labels = torch.randint(0, vocab, (n,))
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        chunked_kd_sums(h_s, w_s, h_t, w_t, labels, KDLoss(), chunk_tokens=64)
    assert max(saved) <= vocab * hidden  # the head weight itself; never n x vocab
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        kd_sums(h_s @ w_s.T, h_t @ w_t.T, labels, KDLoss())
    assert max(saved) >= n * vocab  # the negative control: the plain loss keeps full logits


def test_bad_settings_name_the_flag():
    for kwargs, flag in [({"divergence": "kl2"}, "--loss"), ({"tau": 0.0}, "--tau"), ({"tau": float("inf")}, "--tau"),
                         ({"beta": 1.0}, "--beta"), ({"ce_weight": -1.0}, "--ce-weight"),
                         ({"teacher_topk": 4, "divergence": "jsd"}, "--teacher-topk")]:  # fmt: skip
        with pytest.raises(MinitronError, match=flag):
            KDLoss(**kwargs)
    with pytest.raises(MinitronError, match="vocabulary"):
        chunked_kd_sums(torch.zeros(2, 3), torch.zeros(5, 3), torch.zeros(2, 3), torch.zeros(6, 3),
                        torch.zeros(2, dtype=torch.long), KDLoss())  # fmt: skip


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_forward_kl_gradient_is_softmax_minus_teacher(tau):
    """The closed form (logsumexps and one dot product) gives the textbook gradient in the student's
    logits: tau x (softmax(s / tau) - softmax(t / tau)) per position, and equal logits give exactly 0."""
    s = logits(6, 31, seed=21).requires_grad_()
    t = logits(6, 31, seed=22)
    divergence(s, t, tau=tau).sum().backward()
    expected = tau * (torch.softmax(s.detach() / tau, -1) - torch.softmax(t / tau, -1))
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-6)  # computed in float32
    assert (divergence(t.float(), t.float(), tau=tau) == 0).all()
