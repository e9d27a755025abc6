"""The training loop: it learns, resumes exactly, refuses to clobber, writes a loadable model."""

from __future__ import annotations

import json

import pytest
import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.errors import MinitronError


def config(corpus, out, **kw) -> TrainConfig:
    base = dict(
        data=DataSpec(source=str(corpus), seq_len=16, batch_size=4, heldout_fraction=0.1),
        out=str(out),
        steps=8,
        lr=3e-3,
        warmup_steps=2,
        grad_accum=2,
        eval_every=4,
        eval_batches=1,
        save_every=2,
        log_every=1,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def losses(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, corpus, tokenizer, make_model):
    whole = make_model(0)
    result = train(config(corpus, tmp_path / "whole"), model=whole, tokenizer=tokenizer)
    assert result.step == 8 and result.final is not None
    # The corpus holds ~10 batches, so 8 steps x 2 accumulated batches cross epoch boundaries.
    assert result.tokens == 8 * 2 * 4 * 16

    first = make_model(0)
    stopped = train(config(corpus, tmp_path / "split", stop_at_step=3), model=first, tokenizer=tokenizer)
    assert stopped.step == 3 and stopped.final is None
    other_init = make_model(1)  # weights must come from the checkpoint, not from this model
    resumed = train(config(corpus, tmp_path / "split", resume=True), model=other_init, tokenizer=tokenizer)
    assert resumed.step == 8 and resumed.tokens == result.tokens

    for (name, a), b in zip(whole.state_dict().items(), other_init.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert [s for s, _ in losses(tmp_path / "split")] == list(range(1, 9))
    for (_, a), (_, b) in zip(losses(tmp_path / "whole"), losses(tmp_path / "split"), strict=True):
        assert a == pytest.approx(b, rel=1e-4)


def test_loss_goes_down_and_final_model_loads(tmp_path, corpus, tokenizer, make_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    model = make_model(0)
    result = train(
        config(corpus, out, steps=40, grad_accum=1, lr=1e-2, eval_every=40), model=model, tokenizer=tokenizer
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert evals[-1] < evals[0] - 1.0
    loaded = AutoModelForCausalLM.from_pretrained(result.final)
    tok = AutoTokenizer.from_pretrained(result.final)
    ids = torch.tensor([tok("def f1(x):", add_special_tokens=False)["input_ids"]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    header = json.loads((out / "train_config.json").read_text())
    assert header["objective"] == "next_token_ce" and header["data"]["kind"] == "jsonl"


def test_refuses_existing_run_and_mismatched_resume(tmp_path, corpus, tokenizer, make_model):
    out = tmp_path / "run"
    train(config(corpus, out, steps=2), model=make_model(), tokenizer=tokenizer)
    with pytest.raises(MinitronError, match="already holds a run"):
        train(config(corpus, out, steps=2), model=make_model(), tokenizer=tokenizer)
    with pytest.raises(MinitronError, match="lr"):
        train(config(corpus, out, steps=2, lr=1.0, resume=True), model=make_model(), tokenizer=tokenizer)
    with pytest.raises(MinitronError, match="no checkpoint"):
        train(config(corpus, tmp_path / "none", resume=True), model=make_model(), tokenizer=tokenizer)


def test_custom_objective_is_what_gets_minimised(tmp_path, corpus, tokenizer, make_model):
    class ZeroLogits:
        """Pushes every logit to 0: a stand-in for a distillation loss with its own target."""

        name = "zero_logits"

        def __call__(self, model, input_ids):
            return model(input_ids=input_ids).logits.pow(2).mean()

    model = make_model(0)
    result = train(
        config(corpus, tmp_path / "run", steps=30, lr=1e-2),
        objective=ZeroLogits(),
        model=model,
        tokenizer=tokenizer,
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert evals[-1] < 0.2 * evals[0]
    assert result.eval_loss == evals[-1]


def test_config_validation_names_the_flag():
    with pytest.raises(MinitronError, match="--steps"):
        TrainConfig(steps=0)
    with pytest.raises(MinitronError, match="--schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(MinitronError, match="--stop-at-step"):
        TrainConfig(steps=5, stop_at_step=6)


def test_a_checkpoint_without_a_data_position_is_refused_in_one_line(tmp_path, corpus, tokenizer, make_model):
    """Checkpoints from before data streams saved their state cannot be resumed exactly: refused, kept."""
    from minitron.distill.checkpoint import latest_checkpoint

    split = tmp_path / "split"
    train(config(corpus, split, stop_at_step=6), model=make_model(0), tokenizer=tokenizer)
    path = latest_checkpoint(split) / "state.pt"
    state = torch.load(path, weights_only=True)
    del state["data"]
    torch.save(state, path)
    with pytest.raises(MinitronError, match="holds no data position"):
        train(config(corpus, split, resume=True), model=make_model(1), tokenizer=tokenizer)
    assert latest_checkpoint(split).name == "step-00000006"
