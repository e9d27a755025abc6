"""--gradient-checkpointing recomputes activations in the backward: the same loss and gradients as without."""

from __future__ import annotations

import json

import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.kd import Distillation
from minitron.distill.losses import KDLoss
from minitron.distill.objectives import loss_sums


def _loss_and_grads(model, objective, ids):
    model.train()
    model.zero_grad(set_to_none=True)
    sums = loss_sums(objective, model, ids)
    sums["loss"].backward()
    return sums["loss"].detach(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def _count_block_calls(model):
    from minitron.model.adapters import adapter_for

    calls = {"n": 0}  # a module inside the first block: the recompute calls it again
    next(adapter_for(model).blocks(model)[0].children()).register_forward_pre_hook(
        lambda *_: calls.__setitem__("n", calls["n"] + 1)
    )
    return calls


def test_same_kd_loss_and_gradients_with_and_without_checkpointing(make_model, tokenizer):
    teacher, ids = (
        make_model(0),
        torch.randint(3, len(tokenizer), (2, 24), generator=torch.Generator().manual_seed(0)),
    )
    objective = Distillation(teacher, KDLoss(), len(tokenizer))
    objective.setup(torch.device("cpu"))
    plain = make_model(1)
    checkpointed = make_model(1)
    checkpointed.activation_checkpointing_enable({"use_reentrant": False})
    calls = _count_block_calls(plain), _count_block_calls(checkpointed)
    loss, grads = _loss_and_grads(plain, objective, ids)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed, objective, ids)
    assert (calls[0]["n"], calls[1]["n"]) == (1, 2)  # the checkpointed block ran again in the backward
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=1e-6)
    assert grads_ckpt.keys() == grads.keys() and len(grads) == len(list(plain.parameters()))
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    # A negative control: another student gives other gradients, so the comparison above can fail.
    _, other = _loss_and_grads(make_model(2), objective, ids)
    assert not torch.allclose(other["lm_head.weight"], grads["lm_head.weight"])


def test_trainer_option_gives_the_same_run(tmp_path, corpus, tokenizer, make_model):
    def run(name, **kw):
        config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=2), out=str(tmp_path / name),
                             steps=2, warmup_steps=0, eval_every=0, eval_batches=1, save_every=0, log_every=1,
                             progress=False, **kw)  # fmt: skip
        model = make_model(0)
        train(config, model=model, tokenizer=tokenizer)
        losses = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                  if "loss" in json.loads(line)]  # fmt: skip
        return model, losses

    plain, plain_losses = run("plain")
    checkpointed, ckpt_losses = run("ckpt", gradient_checkpointing=True)
    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    assert len(plain_losses) == 2
    torch.testing.assert_close(ckpt_losses, plain_losses, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
