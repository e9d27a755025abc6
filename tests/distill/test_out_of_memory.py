"""Out of memory in a stage is one line (stage, planned peak, what lowers it) and the last checkpoint is kept."""

from __future__ import annotations

import pytest
import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.checkpoint import latest_checkpoint
from minitron.distill.kd import Distillation
from minitron.distill.losses import KDLoss
from minitron.errors import MinitronError

ERRORS = [
    torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"
    ),
    RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
    ),  # fmt: skip
    MemoryError(),
]


def _fail_from_call(model, n: int, error: BaseException) -> None:
    """Make the model's forward raise `error` from its n-th call on."""
    forward, calls = model.forward, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise error
        return forward(*args, **kwargs)

    model.forward = failing


@pytest.mark.parametrize("error", ERRORS, ids=["cuda", "cpu-allocator", "memory-error"])
def test_out_of_memory_in_distill_is_one_line_and_keeps_the_checkpoint(
    tmp_path, corpus, tokenizer, make_model, error
):
    student = make_model(1)
    _fail_from_call(student, 4, error)  # steps 1-3 run (one forward each), step 4 fails
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=2), out=str(tmp_path / "run"),
                         steps=6, warmup_steps=0, eval_every=0, eval_batches=1, save_every=2, progress=False)  # fmt: skip
    objective = Distillation(make_model(0), KDLoss(), len(tokenizer))
    with pytest.raises(MinitronError) as caught:
        train(config, objective=objective, model=student, tokenizer=tokenizer)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("out of memory in distill (")
    assert "planned peak" in text and "per device on CPU" in text
    assert "--gradient-checkpointing (" in text  # an option that lowers it, with its planned peak
    kept = latest_checkpoint(tmp_path / "run")
    assert kept is not None and kept.name in text and "--resume continues" in text


def test_other_runtime_errors_pass_through(tmp_path, corpus, tokenizer, make_model):
    student = make_model(1)
    _fail_from_call(student, 1, RuntimeError("shape mismatch"))
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=2), out=str(tmp_path / "run"),
                         steps=2, warmup_steps=0, eval_every=0, eval_batches=1, save_every=1, progress=False)  # fmt: skip
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train(config, model=student, tokenizer=tokenizer)


def test_out_of_memory_before_any_checkpoint_says_so(tmp_path, corpus, tokenizer, make_model):
    student = make_model(1)
    _fail_from_call(student, 1, ERRORS[0])
    config = TrainConfig(data=DataSpec(source=str(corpus), seq_len=16, batch_size=2), out=str(tmp_path / "run"),
                         steps=2, warmup_steps=0, eval_every=0, eval_batches=1, save_every=1, progress=False)  # fmt: skip
    with pytest.raises(MinitronError, match=r"^out of memory in train \(CUDA out of memory. Tried to allocate "
                                            r"2.00 GiB\); planned peak .*no checkpoint had been written yet$"):  # fmt: skip
        train(config, model=student, tokenizer=tokenizer)
    assert not (tmp_path / "run").exists()  # a fresh run that never checkpointed leaves nothing


def test_out_of_memory_in_compare_names_the_candidate(tmp_path, corpus, tokenizer, make_model, monkeypatch):
    import json

    from typer.testing import CliRunner

    from minitron.cli import app
    from minitron.distill import kd

    teacher = tmp_path / "teacher"
    make_model(0).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps({"candidates": [{"rank": 1, "drop_blocks": [1]}]}))
    calls = {"n": 0}
    original = kd.chunked_kd_sums

    def failing(*args, **kwargs):  # the loss of the 3rd training step runs out of memory
        calls["n"] += 1
        if calls["n"] == 4:  # 1: the held-out evaluation at step 0, then steps 1, 2, 3
            raise ERRORS[0]
        return original(*args, **kwargs)

    monkeypatch.setattr(kd, "chunked_kd_sums", failing)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(teacher), str(candidates), "--top", "1", "--data", str(corpus),
                                      "--seq-len", "16", "--batch-size", "2", "--eval-batches", "1", "--steps", "4",
                                      "--save-every", "2", "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: out of memory in compare (candidate 1) (CUDA out of memory."), line
    assert "planned peak" in line and "the same compare command continues from it" in line
    assert latest_checkpoint(out / "rank-1") is not None
