"""GPU paths of distillation: bf16 teacher and autocast on CUDA, teacher on its own device (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.kd import Distillation
from minitron.distill.losses import KDLoss

pytestmark = pytest.mark.gpu


def test_bf16_teacher_and_autocast_on_cuda_learn(tmp_path, corpus, tokenizer, make_model):
    teacher = make_model(0)
    objective = Distillation(teacher, KDLoss(), len(tokenizer))
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=4), out=str(tmp_path / "run"),
                         steps=20, lr=1e-2, warmup_steps=2, eval_every=20, eval_batches=1, save_every=0,
                         device="cuda", precision="auto", progress=False)  # fmt: skip
    result = train(config, objective=objective, model=make_model(1), tokenizer=tokenizer)
    assert next(teacher.parameters()).dtype == torch.bfloat16 and next(teacher.parameters()).is_cuda
    assert result.eval_metrics["eval_kd"] < 0.7 * _first(tmp_path / "run")["eval_kd"]


def test_teacher_on_cpu_student_on_cuda(tmp_path, corpus, tokenizer, make_model):
    teacher = make_model(0)
    objective = Distillation(teacher, KDLoss(), len(tokenizer), teacher_device="cpu", teacher_dtype="float32")
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=4), out=str(tmp_path / "run"),
                         steps=4, warmup_steps=1, eval_every=4, eval_batches=1, save_every=0, device="cuda",
                         progress=False)  # fmt: skip
    result = train(config, objective=objective, model=make_model(1), tokenizer=tokenizer)
    assert not next(teacher.parameters()).is_cuda and result.step == 4


def _first(out):
    import json

    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
