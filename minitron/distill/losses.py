"""Distillation losses as pure tensor functions (no models, no state).

Shapes: logits (..., vocab); a teacher summarised by its top-k is (..., k) log-probabilities and
(..., k) token indices. Per-position functions return (...,) so callers mask and normalise; `kd_sums`
and `chunked_kd_sums` return sums over the real positions of a flattened batch, which the trainer
divides by the number of real tokens in the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minitron.errors import MinitronError, check_choice


def topk_kl(
    student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_index: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || student) per position, with the teacher known by its top-k tokens only.

    Both distributions are collapsed onto k + 1 outcomes: the teacher's k tokens and "the rest"
    (the teacher's remaining mass 1 - sum exp(teacher_logprobs), and the student's mass outside
    those k tokens). By the data-processing inequality this is a lower bound of the full-vocabulary
    KL, equal to it when the teacher puts no mass outside its top k. Computed in float32.

    student_logits (..., vocab); teacher_logprobs, teacher_index (..., k) -> (...,)
    """
    logits = student_logits.float()
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    student_top = logits.gather(-1, teacher_index) - log_z  # (..., k)
    p_top = teacher_logprobs.float().exp()
    kl = (p_top * (teacher_logprobs.float() - student_top)).sum(-1)
    # Student's log-mass outside the teacher's top k: logsumexp of the other logits, stably.
    outside = logits.scatter(-1, teacher_index, float("-inf"))
    student_rest = torch.logsumexp(outside, dim=-1) - log_z.squeeze(-1)
    p_rest = (1 - p_top.sum(-1)).clamp_min(0)
    # No rest term when the teacher's mass is all in its top k, or when no token lies outside
    # them (k = vocab; p_rest is then float rounding).
    some = (p_rest > 0) & torch.isfinite(student_rest)
    rest = torch.where(
        some, p_rest * (torch.log(p_rest.clamp_min(1e-30)) - student_rest), torch.zeros_like(p_rest)
    )
    return kl + rest


# ---- full-vocabulary KD losses -------------------------------------------------------------------

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
IGNORE = -100  # label of a position without a target (padding, the last position of a sequence)


@dataclass(frozen=True)
class KDLoss:
    """What the distillation loss is: a divergence between the tempered distributions, optionally mixed
    with next-token cross-entropy, optionally against a teacher known only by its top-k tokens.

    Per real position: tau^2 * D(softmax(t / tau), softmax(s / tau)) + ce_weight * CE(s, label).
    The tau^2 factor keeps the gradient scale independent of tau (Hinton et al.).
    """

    divergence: str = "forward_kl"
    tau: float = 1.0
    beta: float = 0.5  # generalised JSD only: the teacher's weight in the mixture
    ce_weight: float = 0.0
    teacher_topk: int = 0  # 0 = the full teacher distribution

    def __post_init__(self) -> None:
        check_choice("--loss", self.divergence, DIVERGENCES)
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise MinitronError(f"--tau must be a positive number, got {self.tau}")
        if not 0 < self.beta < 1:
            raise MinitronError(f"--beta must be in (0, 1), got {self.beta}")
        if not (math.isfinite(self.ce_weight) and self.ce_weight >= 0):
            raise MinitronError(f"--ce-weight must be >= 0, got {self.ce_weight}")
        if self.teacher_topk < 0:
            raise MinitronError(f"--teacher-topk must be >= 0 (0 = full vocabulary), got {self.teacher_topk}")
        if self.teacher_topk and self.divergence != "forward_kl":
            raise MinitronError("--teacher-topk works with --loss forward_kl only")

    def check_vocab(self, vocab: int) -> None:
        """Refuse a top-k as large as the teacher's vocabulary: it would silently mean the full one."""
        if self.teacher_topk >= vocab:
            raise MinitronError(
                f"--teacher-topk {self.teacher_topk} is not below the teacher's vocabulary of {vocab:,} "
                "tokens; use 0 for the full distribution"
            )


def divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: str = "forward_kl",
    tau: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """tau^2 x D(teacher, student) per position on softmax(logits / tau), in float32.

    forward_kl: KL(p_t || p_s), the Minitron loss (mode-covering).
    reverse_kl: KL(p_s || p_t) (mode-seeking).
    jsd:        generalised Jensen-Shannon with m = beta p_t + (1 - beta) p_s:
                beta KL(p_t || m) + (1 - beta) KL(p_s || m); beta = 0.5 is the symmetric JSD.

    (..., vocab), (..., vocab) -> (...,)
    """
    if kind == "forward_kl":
        return forward_kl(student_logits.float() / tau, teacher_logits.float() / tau) * tau**2
    log_s = torch.log_softmax(student_logits.float() / tau, dim=-1)
    log_t = torch.log_softmax(teacher_logits.float() / tau, dim=-1)
    if kind == "reverse_kl":
        d = _kl(log_s, log_t)
    elif kind == "jsd":
        log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1 - beta)]), dim=0)
        d = beta * _kl(log_t, log_m) + (1 - beta) * _kl(log_s, log_m)
    else:
        raise MinitronError(f"unknown divergence {kind!r} (one of {', '.join(DIVERGENCES)})")
    return d * tau**2


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_lse: torch.Tensor | None = None,
    teacher_lse: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) per position, from the log-normalisers.

    With p = softmax(t): KL = sum p (t - s) + logsumexp(s) - logsumexp(t), as sum p = 1 (the
    differences are taken before the sums, so equal logits give exactly 0). Beside the two
    logsumexps this is one elementwise pass and one dot product per position, and the gradient
    reaching the student's logits is softmax(s) - p: much less work than two log-softmaxes and a
    masked elementwise product (the loss is a large part of a narrow model's step). Both logits must
    be finite (they come from linear heads). Callers that already have either logsumexp pass it.

    (..., vocab), (..., vocab) -> (...,)
    """
    if student_lse is None:
        student_lse = torch.logsumexp(student_logits, dim=-1)
    if teacher_lse is None:
        teacher_lse = torch.logsumexp(teacher_logits, dim=-1)
    p = torch.exp(teacher_logits - teacher_lse.unsqueeze(-1))
    return torch.linalg.vecdot(p, teacher_logits - student_logits) + (student_lse - teacher_lse)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    # xlogy-style: a zero-probability token contributes 0 even where log_q is -inf.
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def kd_sums(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, loss: KDLoss
) -> torch.Tensor:
    """Sums over the real positions (label != IGNORE) of [total loss, KD term, student CE, teacher CE].

    Sums, not means: the caller divides by the number of real tokens in the whole global batch, so
    accumulation and data parallelism give the gradient of one big batch. Only the first entry
    carries the objective; the others are for reporting (the teacher CE has no gradient).

    (n, vocab), (n, vocab), (n,) -> (4,)
    """
    real = labels != IGNORE
    s, t = student_logits.float(), teacher_logits.float()
    target = labels.clamp_min(0).unsqueeze(-1)
    s_lse = torch.logsumexp(s, dim=-1)
    with torch.no_grad():
        t_lse = torch.logsumexp(t, dim=-1)
        teacher_ce = t_lse - t.gather(-1, target).squeeze(-1)
    student_ce = s_lse - s.gather(-1, target).squeeze(-1)
    if loss.teacher_topk:
        logp, index = torch.log_softmax(t / loss.tau, -1).topk(min(loss.teacher_topk, t.shape[-1]), dim=-1)
        kd = topk_kl(s / loss.tau, logp, index) * loss.tau**2
    elif loss.divergence == "forward_kl" and loss.tau == 1:
        kd = forward_kl(s, t, s_lse, t_lse)  # the Minitron loss: the log-normalisers of the CE terms serve
    else:
        kd = divergence(s, t, loss.divergence, loss.tau, loss.beta)
    zero = torch.zeros((), device=s.device)
    kd_sum = torch.where(real, kd, zero).sum()
    ce_sum = torch.where(real, student_ce, zero).sum()
    total = kd_sum + loss.ce_weight * ce_sum if loss.ce_weight else kd_sum
    return torch.stack([total, kd_sum.detach(), ce_sum.detach(), torch.where(real, teacher_ce, zero).sum()])


def chunked_kd_sums(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_head: torch.Tensor,
    labels: torch.Tensor,
    loss: KDLoss,
    chunk_tokens: int = 256,
) -> torch.Tensor:
    """`kd_sums` of the logits `hidden @ head.T` of both models, computed `chunk_tokens` positions at a
    time so neither model's logits exist for more than one chunk at once.

    Each chunk runs under activation checkpointing: its logits are freed after the forward and
    recomputed in the backward, so peak memory is a few chunk x vocab tensors however long the
    batch, and value and gradients equal `kd_sums` on the full logits (up to float summation order).

    student_hidden (n, hidden_s), student_head (vocab, hidden_s), teacher_hidden (n, hidden_t),
    teacher_head (vocab, hidden_t), labels (n,) -> (4,)
    """
    from torch.utils.checkpoint import checkpoint

    if student_head.shape[0] != teacher_head.shape[0]:
        raise MinitronError(
            f"student and teacher heads differ in vocabulary ({student_head.shape[0]} vs {teacher_head.shape[0]})"
        )
    if chunk_tokens < 1:
        raise MinitronError(f"--chunk-tokens must be positive, got {chunk_tokens}")
    total = None
    for start in range(0, labels.shape[0], chunk_tokens):
        end = start + chunk_tokens
        if not bool((labels[start:end] != IGNORE).any()):
            continue
        args = (student_hidden[start:end], student_head, teacher_hidden[start:end], teacher_head)
        if torch.is_grad_enabled():
            part = checkpoint(_chunk, *args, labels[start:end], loss, use_reentrant=False)
        else:
            part = _chunk(*args, labels[start:end], loss)
        total = part if total is None else total + part
    if total is None:
        return torch.zeros(4, device=student_hidden.device, requires_grad=student_hidden.requires_grad)
    return total


def _chunk(hs, ws, ht, wt, labels, loss: KDLoss) -> torch.Tensor:
    with torch.no_grad():
        teacher_logits = torch.nn.functional.linear(ht, wt)
    return kd_sums(torch.nn.functional.linear(hs, ws), teacher_logits, labels, loss)
