"""The Distillation objective: chunked KD on real models equals the full-logit loss; vocab mapping; frozen teacher."""

from __future__ import annotations

import copy

import pytest
import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.kd import Distillation, next_token_labels, shared_vocab
from minitron.distill.losses import IGNORE, KDLoss, kd_sums
from minitron.errors import MinitronError


def test_objective_equals_the_plain_loss_on_full_logits(make_model):
    teacher, student = make_model(0), make_model(1)
    ids = torch.randint(3, teacher.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    objective = Distillation(teacher, KDLoss(ce_weight=0.3), teacher.config.vocab_size, chunk_tokens=7)
    objective.setup(torch.device("cpu"))
    sums = objective.sums(student, ids)
    sums["loss"].backward()
    got = {n: p.grad.clone() for n, p in student.named_parameters()}
    student.zero_grad()
    labels = next_token_labels(ids)
    vocab = teacher.config.vocab_size
    with torch.no_grad():
        t_logits = teacher(input_ids=ids).logits.reshape(-1, vocab)
    plain = kd_sums(student(input_ids=ids).logits.reshape(-1, vocab), t_logits, labels, KDLoss(ce_weight=0.3))
    plain[0].backward()
    assert sums["count"].item() == 2 * 23 == (labels != IGNORE).sum().item()
    torch.testing.assert_close(torch.stack([sums["loss"], sums["kd"], sums["lm_loss"], sums["teacher_lm_loss"]]),
                               plain.detach(), rtol=1e-5, atol=1e-5)  # fmt: skip
    for name, p in student.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_shared_vocab_accepts_padding_only():
    assert shared_vocab(300, 300, 300) == 300
    assert shared_vocab(300, 320, 300) == 300  # teacher head padded past the tokenizer
    assert shared_vocab(384, 300, 290) == 300
    with pytest.raises(MinitronError, match="vocabularies differ"):
        shared_vocab(300, 320, 310)


def test_padded_teacher_head_gives_the_unpadded_loss(make_model):
    teacher, student = make_model(0), make_model(1)
    vocab = teacher.config.vocab_size
    padded = copy.deepcopy(teacher)
    head = torch.nn.Linear(teacher.config.hidden_size, vocab + 13, bias=False)
    with torch.no_grad():
        head.weight[:vocab] = teacher.lm_head.weight
        head.weight[vocab:] = 5.0  # rows the tokenizer never produces: must not count
    padded.lm_head = head
    ids = torch.randint(3, vocab, (2, 16), generator=torch.Generator().manual_seed(1))
    values = []
    for t in (teacher, padded):
        objective = Distillation(t, KDLoss(), shared_vocab(vocab, t.lm_head.weight.shape[0], vocab))
        objective.setup(torch.device("cpu"))
        values.append(objective.sums(student, ids)["kd"])
    torch.testing.assert_close(values[1], values[0])


def test_teacher_is_frozen_and_untouched_by_training(tmp_path, corpus, tokenizer, make_model):
    teacher = make_model(0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=2), out=str(tmp_path / "run"),
                         steps=3, lr=1e-2, warmup_steps=1, eval_every=3, eval_batches=1, save_every=0,
                         progress=False, tokens=100)  # fmt: skip
    result = train(config, objective=Distillation(teacher, KDLoss(), len(tokenizer)), model=make_model(1),
                   tokenizer=tokenizer)  # fmt: skip
    assert result.step == 4 and result.tokens == 4 * 2 * 16  # --tokens 100 -> ceil(100 / 32) steps
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
