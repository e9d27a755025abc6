"""`minitron distill TEACHER STUDENT` and `minitron train MODEL`: their options -> a config -> the loop
in trainer.py (the student trains on the teacher's logits, or the model on next-token cross-entropy)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from minitron.data import DataSpec
from minitron.distill.losses import KDLoss
from minitron.distill.trainer import TrainConfig, TrainResult
from minitron.errors import MinitronError


def recipe(
    *,
    data: str,
    text_field: str,
    glob: str | None,
    seq_len: int,
    batch_size: int,
    samples: int,
    heldout_fraction: float,
    tokens: int = 0,
    stop_at_step: int = 0,
    **train: Any,
) -> TrainConfig:
    """A TrainConfig from the training options that train, distill and compare share; 0 turns
    --samples, --tokens and --stop-at-step off."""
    spec = DataSpec.from_options(data, text_field, glob, seq_len=seq_len, batch_size=batch_size,
                                 samples=samples or None, heldout_fraction=heldout_fraction,
                                 seed=train.get("seed", 0))  # fmt: skip
    return TrainConfig(data=spec, tokens=tokens or None, stop_at_step=stop_at_step or None, **train)


def kd_loss(options: dict[str, Any]) -> KDLoss:
    """The KDLoss of distill's and compare's options (--loss, --tau, --beta, --ce-weight, --teacher-topk),
    taken out of `options`."""
    return KDLoss(divergence=options.pop("loss"), tau=options.pop("tau"), beta=options.pop("beta"),
                  ce_weight=options.pop("ce_weight"), teacher_topk=options.pop("teacher_topk"))  # fmt: skip


def train_config(model: str, out: str, **options: Any) -> TrainConfig:
    """`minitron train`'s options -> its TrainConfig; an --out that cannot be written is refused first."""
    from minitron.atomic import check_writable

    check_writable(out)
    return recipe(model=model, out=out, **options)


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

    @classmethod
    def from_options(
        cls,
        teacher: str,
        student: str,
        chunk_tokens: int,
        teacher_device: str | None,
        teacher_dtype: str,
        **options: Any,
    ) -> DistillConfig:
        """`minitron distill`'s options -> its config (the student trains under the training options)."""
        loss = kd_loss(options)
        return cls(teacher=teacher, train=train_config(student, **options), loss=loss, chunk_tokens=chunk_tokens,
                   teacher_device=teacher_device, teacher_dtype=teacher_dtype)  # fmt: skip


def distill(
    config: DistillConfig, student=None, tokenizer=None, student_info: dict[str, Any] | None = None
) -> TrainResult:
    """Distil `config.teacher` into the student (`config.train.model`, or the in-memory `student`)."""
    import torch

    from minitron.device import resolve_device
    from minitron.distill.kd import Distillation, shared_vocab
    from minitron.distill.trainer import train
    from minitron.model.load import load_model, load_tokenizer, resolve_model
    from minitron.progress import status

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


def main(config: TrainConfig | DistillConfig) -> TrainResult:
    """`minitron train` or `minitron distill`: the run, then its result table (rank 0 under torchrun)."""
    from minitron.distill.trainer import result_table, train
    from minitron.parallel import rank_and_world

    result = distill(config) if isinstance(config, DistillConfig) else train(config)
    if rank_and_world()[0] == 0:
        from rich.console import Console

        Console().print(result_table(result, result.objective_name))
    return result


def replace_train(config: DistillConfig, **changes) -> DistillConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
