"""The Minitron finding on the shipped tiny teacher: pruned like the 12B -> 9B (hidden 128 -> 112, FFN
512 -> 392, the 6 blocks the 9B drops; ~74% of the parameters), a short logit distillation brings the
student's held-out loss much closer to the teacher's, and beats plain CE training for the same steps and data.

Relative thresholds only, so they hold for the current teacher and for a better-trained one.
"""

from __future__ import annotations

import pytest
import torch

from minitron.data import DataSpec
from minitron.distill import TrainConfig, train
from minitron.distill.kd import Distillation
from minitron.distill.losses import KDLoss
from minitron.model.load import BUILTIN_CHECKPOINTS

TINY_DIR = BUILTIN_CHECKPOINTS["tiny"]
NANO2_DROPPED = (7, 8, 23, 24, 48, 52)

pytestmark = pytest.mark.skipif(
    not list(TINY_DIR.glob("*.safetensors")), reason=f"tiny teacher checkpoint not present at {TINY_DIR}"
)


@pytest.mark.slow
def test_kd_recovers_the_pruned_tiny_teacher_and_beats_ce(tmp_path):
    from minitron.importance.run import ScoreConfig
    from minitron.importance.run import run as score
    from minitron.model.load import load_model, load_tokenizer, resolve_model
    from minitron.prune.slicing import prune_to
    from minitron.prune.target import TargetSpec

    scores = score(ScoreConfig(model="tiny", samples=8, seq_len=128, batch_size=8, depth="none", device="cpu",
                               out=tmp_path / "scores.safetensors", report=False))  # fmt: skip
    source = resolve_model("tiny")
    teacher, tokenizer = load_model(source, dtype="float32"), load_tokenizer(source)
    spec = TargetSpec(hidden=112, ffn=392, drop_blocks=NANO2_DROPPED)
    ratio = sum(p.numel() for p in prune_to(teacher, spec, scores).parameters()) / sum(
        p.numel() for p in teacher.parameters()
    )
    assert 0.70 < ratio < 0.76

    def config(name):
        return TrainConfig(data=DataSpec(seq_len=64, batch_size=4), out=str(tmp_path / name), steps=20, lr=1e-3,
                           warmup_steps=2, eval_every=20, eval_batches=2, save_every=0, progress=False)  # fmt: skip

    torch.manual_seed(0)
    kd = train(config("kd"), objective=Distillation(teacher, KDLoss(), teacher.config.vocab_size),
               model=prune_to(teacher, spec, scores), tokenizer=tokenizer)  # fmt: skip
    ce = train(config("ce"), model=prune_to(teacher, spec, scores), tokenizer=tokenizer)
    before = _first_eval(tmp_path / "kd")
    teacher_loss = before["eval_teacher_lm_loss"]
    gap_before = before["eval_lm_loss"] - teacher_loss
    gap_after = kd.eval_metrics["eval_lm_loss"] - teacher_loss
    assert gap_before > 0
    assert gap_after < 0.5 * gap_before, (gap_before, gap_after)  # much closer to the teacher
    assert kd.eval_metrics["eval_kd"] < 0.75 * before["eval_kd"]
    # Same steps, data and evaluation batches: KD's held-out LM loss beats CE training's.
    assert kd.eval_metrics["eval_lm_loss"] < ce.eval_loss, (kd.eval_metrics, ce.eval_loss)


def _first_eval(out):
    import json

    return next(
        r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["step"] == 0
    )
