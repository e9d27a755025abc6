"""The objective: shared-tensor pruning, the teacher top-k cache, KL against a full-vocabulary reference."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "prune"))
from prune_helpers import random_scores  # noqa: E402

from minitron.model.arch import Architecture  # noqa: E402
from minitron.prune.slicing import prune_to  # noqa: E402
from minitron.prune.target import TargetSpec  # noqa: E402
from minitron.search.objective import evaluate, prune_shared  # noqa: E402
from minitron.search.teacher_cache import TeacherCache, build_cache, load_cache  # noqa: E402


def test_prune_shared_equals_prune_to_and_shares_untouched_tensors(tiny_model, token_batch):
    arch = Architecture.from_hf_config(tiny_model.config)
    scores = random_scores(arch, seed=1)
    spec = TargetSpec(ffn=48, mamba_heads=6, drop_blocks=(2,))  # hidden and attention untouched
    shared, copied = prune_shared(tiny_model, spec, scores), prune_to(tiny_model, spec, scores)
    with torch.no_grad():
        torch.testing.assert_close(shared(token_batch).logits, copied(token_batch).logits, rtol=0, atol=0)
    teacher = {p.data_ptr() for p in tiny_model.parameters()}
    params = dict(shared.named_parameters())
    assert params["model.embeddings.weight"].data_ptr() in teacher  # hidden kept: not copied
    assert params["model.layers.4.mixer.q_proj.weight"].data_ptr() in teacher  # old block 5 (block 2 dropped)
    assert params["model.layers.0.mixer.in_proj.weight"].data_ptr() not in teacher  # Mamba heads sliced
    assert (
        params["model.layers.0.mixer.in_proj.weight"].shape[0]
        < tiny_model.model.layers[0].mixer.in_proj.weight.shape[0]
    )


def _full_kl(teacher, student, ids) -> float:
    with torch.no_grad():
        p = torch.log_softmax(teacher(ids).logits.float(), -1)
        q = torch.log_softmax(student(ids).logits.float(), -1)
    return (p.exp() * (p - q)).sum(-1).mean().item()


def test_cached_top_k_kl_matches_full_vocabulary_kl(tmp_path, tiny_model, token_batch):
    arch = Architecture.from_hf_config(tiny_model.config)
    scores = random_scores(arch, seed=2)
    student = prune_shared(tiny_model, TargetSpec(hidden=24, ffn=40), scores)
    batches = [token_batch, token_batch.flip(1)]
    path = build_cache(tiny_model, batches, arch.vocab, tmp_path / "c.safetensors", {"key": "k"})
    cache = load_cache(path)
    assert cache.top_k == arch.vocab and cache.tokens == 2 * token_batch.numel()
    want = sum(_full_kl(tiny_model, student, b) for b in batches) / 2
    assert abs(evaluate(student, cache, "kl") - want) < 1e-5 * max(1, want)
    # the teacher against itself: zero
    assert abs(evaluate(tiny_model, cache, "kl")) < 1e-5
    # top-k < vocab is a lower bound of the full KL (data-processing inequality), and close for k = 32
    small = load_cache(build_cache(tiny_model, batches, 32, tmp_path / "c32.safetensors", {"key": "k32"}))
    approx = evaluate(student, small, "kl")
    assert approx <= want + 1e-6 and approx > 0.5 * want
    # lm-loss: mean next-token cross-entropy
    with torch.no_grad():
        logits = torch.cat([student(b).logits[:, :-1] for b in batches])
    labels = torch.cat([b[:, 1:] for b in batches])
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, arch.vocab).float(), labels.reshape(-1)).item()
    assert abs(evaluate(student, cache, "lm-loss") - ce) < 1e-5


def test_cache_tensors(tmp_path, tiny_model, token_batch):
    path = build_cache(tiny_model, [token_batch], 5, tmp_path / "c.safetensors", {"key": "abc"})
    cache: TeacherCache = load_cache(path)
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_model(token_batch).logits.float(), -1)
    top = logprobs.topk(5, -1)
    torch.testing.assert_close(cache.logprobs[0], top.values)
    assert torch.equal(cache.index[0], top.indices) and torch.equal(cache.ids[0], token_batch)
    assert cache.key == "abc"
