"""Logit distillation as a training objective: a frozen teacher, a chunked KD loss on the final hidden states.

Neither model computes full-sequence logits: both run their own forward keeping the logits of one
position only (so DDP and FSDP2 hooks fire as usual), the final hidden states are caught on the way
out of the backbone, and `chunked_kd_sums` projects them to the vocabulary a chunk of tokens at a time.
"""

from __future__ import annotations

from typing import Any

import torch

from minitron.device import resolve_device, weights_dtype
from minitron.distill.losses import IGNORE, KDLoss, chunked_kd_sums
from minitron.errors import MinitronError, check_choice

TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside a DDP wrapper (FSDP2 shards in place, so it needs no unwrapping)."""
    return getattr(model, "module", model)


def final_hidden(model: torch.nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(final normalised hidden states (batch, seq, hidden), output head weight (vocab, hidden)).

    The model's own forward runs (wrappers' hooks fire) with the logits of the last position only;
    the hidden states are caught from the backbone's output.
    """
    inner = unwrap(model)
    caught: dict[str, torch.Tensor] = {}

    def hook(module, args, output):
        caught["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = inner.base_model.register_forward_hook(hook)
    try:
        model(input_ids=input_ids, logits_to_keep=1, use_cache=False)
    finally:
        handle.remove()
    head = inner.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise MinitronError("distillation of output heads with a bias is not supported")
    return caught["hidden"], head.weight


def next_token_labels(input_ids: torch.Tensor) -> torch.Tensor:
    """(batch, seq) -> (batch * seq,) next-token targets, IGNORE at each sequence's last position."""
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, :-1] = input_ids[:, 1:]
    return labels.reshape(-1)


def shared_vocab(student_vocab: int, teacher_vocab: int, tokenizer_vocab: int) -> int:
    """The vocabulary both heads are compared on.

    Equal sizes are used as they are. When one head is a padded version of the other (rows past the
    tokenizer's size are never produced by it), both are cut to the smaller size; anything else is an
    error, since the KL between different vocabularies means nothing.
    """
    if student_vocab == teacher_vocab:
        return student_vocab
    smaller = min(student_vocab, teacher_vocab)
    if tokenizer_vocab <= smaller:
        return smaller
    raise MinitronError(
        f"teacher and student vocabularies differ ({teacher_vocab} vs {student_vocab}) and the tokenizer "
        f"has {tokenizer_vocab} tokens, more than the smaller head: not a padded prefix; use a student "
        "pruned from this teacher"
    )


class Distillation:
    """The KD objective: holds the frozen teacher; `sums` returns the loss summed over real tokens."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        loss: KDLoss,
        vocab: int,
        chunk_tokens: int = 256,
        teacher_device: str | None = None,
        teacher_dtype: str = "auto",
    ):
        check_choice("--teacher-dtype", teacher_dtype, TEACHER_DTYPES)
        self.teacher, self.loss, self.vocab = teacher, loss, vocab
        self.chunk_tokens, self.teacher_device, self.teacher_dtype = (
            chunk_tokens,
            teacher_device,
            teacher_dtype,
        )
        self.name = f"kd_{loss.divergence}"
        self._teacher_head: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {"loss": vars(self.loss), "vocab": self.vocab, "chunk_tokens": self.chunk_tokens,
                "teacher_dtype": self.teacher_dtype}  # fmt: skip

    def setup(self, device: torch.device, fsdp: bool = False) -> None:
        """Freeze the teacher on its device, in its dtype (bf16 on CUDA by default), sharded under FSDP2."""
        teacher_device = (
            resolve_device(self.teacher_device, "--teacher-device") if self.teacher_device else device
        )
        dtype = weights_dtype(self.teacher_dtype, teacher_device)
        self.teacher.to(device=teacher_device, dtype=getattr(torch, dtype))
        self.teacher.eval().requires_grad_(False)
        self._device, self._teacher_on = device, teacher_device
        if fsdp:
            from minitron.parallel import fully_shard_blocks

            fully_shard_blocks(self.teacher)

    def sums(self, model: torch.nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = next_token_labels(input_ids)
        with torch.no_grad():
            t_hidden, t_head = final_hidden(self.teacher, input_ids.to(self._teacher_on))
            t_hidden, t_head = t_hidden.to(self._device), t_head[: self.vocab].to(self._device)
        s_hidden, s_head = final_hidden(model, input_ids)
        sums = chunked_kd_sums(
            s_hidden.reshape(-1, s_hidden.shape[-1]),
            s_head[: self.vocab],
            t_hidden.reshape(-1, t_hidden.shape[-1]),
            t_head,
            labels,
            self.loss,
            self.chunk_tokens,
        )
        count = (labels != IGNORE).sum().float()
        return {
            "loss": sums[0],
            "count": count,
            "kd": sums[1],
            "lm_loss": sums[2],
            "teacher_lm_loss": sums[3],
        }

    def __call__(self, model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        sums = self.sums(model, input_ids)
        return sums["loss"] / sums["count"]
