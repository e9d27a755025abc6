"""`minitron distill TEACHER STUDENT`: train the student on the teacher's logits (the loop in trainer.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from minitron.distill.losses import KDLoss
from minitron.distill.trainer import TrainConfig, TrainResult
from minitron.errors import MinitronError


@dataclass(frozen=True)
class DistillConfig:
    """A distillation run: the student trains under `train` (its `model` is the student) against `teacher`."""

    teacher: str
    train: TrainConfig
    loss: KDLoss = field(default_factory=KDLoss)
    chunk_tokens: int = 256
    teacher_device: str | None = None
    teacher_dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.chunk_tokens < 1:
            raise MinitronError(f"--chunk-tokens must be positive, got {self.chunk_tokens}")


def distill(
    config: DistillConfig, student=None, tokenizer=None, student_info: dict[str, Any] | None = None
) -> TrainResult:
    """Distil `config.teacher` into the student (`config.train.model`, or the in-memory `student`)."""
    import torch

    from minitron.device import resolve_device
    from minitron.distill.kd import Distillation, shared_vocab
    from minitron.distill.trainer import status, train
    from minitron.model.load import load_model, load_tokenizer, resolve_model

    resolve_device(config.train.device)  # a device this machine lacks fails here, before any loading
    if config.teacher_device:
        resolve_device(config.teacher_device, "--teacher-device")
    teacher_source = resolve_model(config.teacher)
    teacher_source.require_weights("minitron distill")
    config.loss.check_vocab(teacher_source.architecture.vocab)
    if student is None:
        source = resolve_model(config.train.model)
        source.require_weights("minitron distill")
        with status(f"loading the student {source.name}", config.train.progress):
            student = load_model(source, dtype="float32", device="cpu", command="minitron distill")
        tokenizer = load_tokenizer(source, command="minitron distill")
        student_info = {"model": source.name, "path": str(source.path.resolve()), "fingerprint": source.fingerprint(),
                        **source.architecture.summary()}  # fmt: skip
    teacher_tokenizer = load_tokenizer(teacher_source, command="minitron distill")
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise MinitronError("teacher and student tokenizers differ; distillation compares token by token")
    with status(f"loading the teacher {teacher_source.name}", config.train.progress):
        teacher = load_model(teacher_source, dtype="float32", device="cpu", command="minitron distill")
    vocab = shared_vocab(student.config.vocab_size, teacher.config.vocab_size, len(tokenizer))
    objective = Distillation(teacher, config.loss, vocab, config.chunk_tokens, config.teacher_device,
                             config.teacher_dtype)  # fmt: skip
    provenance = {
        "teacher": {"model": teacher_source.name, "path": str(teacher_source.path.resolve()),
                    "fingerprint": teacher_source.fingerprint(), **teacher_source.architecture.summary()},
        "student_source": student_info or {"model": "in-memory"},
        "vocab_compared": vocab,
    }  # fmt: skip
    torch.manual_seed(config.train.seed)
    return train(config.train, objective=objective, model=student, tokenizer=tokenizer, provenance=provenance)


def replace_train(config: DistillConfig, **changes) -> DistillConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
