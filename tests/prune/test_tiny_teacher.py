"""The shipped tiny teacher pruned like the 12B -> 9B (hidden 128 -> 112, FFN 512 -> 392, 62 -> 56 blocks)."""

from __future__ import annotations

import pytest
import torch
from prune_helpers import random_scores, reference_model

from minitron.importance.scores import save_scores
from minitron.model.load import BUILTIN_CHECKPOINTS, load_model, resolve_model
from minitron.prune import PruneConfig, run
from minitron.prune.select import select_units
from minitron.prune.target import TargetSpec, resolve_target

TINY_DIR = BUILTIN_CHECKPOINTS["tiny"]
# The blocks the 9B leaves out of the 12B pattern (greedy alignment; tests/prune/test_target.py).
NANO2_DROPPED = (7, 8, 23, 24, 48, 52)

pytestmark = pytest.mark.skipif(
    not (TINY_DIR / "config.json").exists() or not list(TINY_DIR.glob("*.safetensors")),
    reason=f"tiny teacher checkpoint not present at {TINY_DIR} (built by the training task)",
)


def test_tiny_teacher_prunes_to_its_nano2_equivalent(tmp_path):
    source = resolve_model("tiny")
    arch = source.architecture
    assert (arch.hidden, arch.ffn, arch.n_blocks) == (128, 512, 62), "tiny teacher has changed shape"
    # Random-but-fixed scores stand in for `minitron score` (the ranking does not change the slicing).
    scores = random_scores(arch, seed=0, fingerprint=source.fingerprint())
    scores_path = save_scores(scores, tmp_path / "scores.safetensors")
    spec = TargetSpec(hidden=112, ffn=392, drop_blocks=NANO2_DROPPED)
    out = tmp_path / "tiny-pruned"
    result = run(PruneConfig(model="tiny", out=out, scores=scores_path, target=spec))
    assert result.target.n_blocks == 56 and result.target.pattern.count("*") == arch.pattern.count("*") - 2

    teacher = load_model(source)
    sel = select_units(arch, resolve_target(arch, spec, scores), scores)
    ids = torch.randint(3, arch.vocab, (1, 24), generator=torch.Generator().manual_seed(0))

    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()  # as the teacher
    assert sum(p.numel() for p in pruned.parameters()) == result.target.n_params
    with torch.no_grad():
        got, want = pruned(ids).logits, reference_model(teacher, sel)(ids).logits
    torch.testing.assert_close(got, want)

    # Greedy generation through the KV/SSM cache of the renumbered blocks picks what one uncached
    # forward over the whole sequence picks (a fresh config: no EOS stop, no logits processors).
    from transformers import GenerationConfig

    greedy = GenerationConfig(max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        generated = pruned.generate(ids[:, :12], generation_config=greedy, use_cache=True)
        full = pruned(generated).logits
    assert generated.shape[1] == 16
    assert torch.equal(generated[0, 12:], full[0, 11:15].argmax(-1))
