"""KD losses as pure functions, against plain full-vocabulary references."""

from __future__ import annotations

import torch

from minitron.distill.losses import topk_kl


def full_kl(student_logits, teacher_logits):
    p = torch.log_softmax(teacher_logits.float(), -1)
    q = torch.log_softmax(student_logits.float(), -1)
    return (p.exp() * (p - q)).sum(-1)


def test_topk_kl_with_every_token_is_the_full_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 11, generator=g), torch.randn(3, 4, 11, generator=g)
    logp, index = torch.log_softmax(t, -1).topk(11, dim=-1)
    torch.testing.assert_close(topk_kl(s, logp, index), full_kl(s, t))


def test_topk_kl_equals_the_kl_of_the_collapsed_distributions():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 13, generator=g), 3 * torch.randn(5, 13, generator=g)
    k = 4
    logp, index = torch.log_softmax(t, -1).topk(k, dim=-1)
    expected = []
    for row in range(5):
        keep = index[row]
        rest = torch.ones(13, dtype=torch.bool)
        rest[keep] = False
        p, q = torch.softmax(t[row], -1), torch.softmax(s[row], -1)
        pc = torch.cat([p[keep], p[rest].sum().reshape(1)])
        qc = torch.cat([q[keep], q[rest].sum().reshape(1)])
        expected.append((pc * (pc.log() - qc.log())).sum())
    torch.testing.assert_close(topk_kl(s, logp, index), torch.stack(expected))
    assert (topk_kl(s, logp, index) <= full_kl(s, t) + 1e-6).all()  # a lower bound of the full KL


def test_topk_kl_is_zero_for_the_teacher_itself_and_positive_otherwise():
    g = torch.Generator().manual_seed(2)
    t = torch.randn(6, 17, generator=g)
    logp, index = torch.log_softmax(t, -1).topk(5, dim=-1)
    torch.testing.assert_close(topk_kl(t, logp, index), torch.zeros(6), atol=1e-6, rtol=0)
    assert (topk_kl(torch.randn(6, 17, generator=g), logp, index) > 0).all()
