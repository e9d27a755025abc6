"""Distillation losses as pure tensor functions (no models, no state).

Shapes: logits (..., vocab); a teacher summarised by its top-k is (..., k) log-probabilities and
(..., k) token indices. Functions return per-position values (...,) so callers mask and normalise.
"""

from __future__ import annotations

import torch


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
