"""The shipped `tiny` teacher: loads with plain transformers, generates, and has clearly learned."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import pytest
import torch

from minitron.data import DataSpec, token_batches
from minitron.model.arch import Architecture
from minitron.model.load import ASSETS_DIR, PRESET_DIR

TINY_DIR = ASSETS_DIR / "tiny"
pytestmark = pytest.mark.skipif(
    not (TINY_DIR / "model.safetensors").exists(),
    reason="minitron/assets/tiny not built yet (python scripts/make_tiny.py)",
)


@pytest.fixture(scope="module")
def teacher():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(TINY_DIR, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(TINY_DIR)


def test_pattern_is_the_12b_pattern():
    big = Architecture.from_hf_config(json.loads((PRESET_DIR / "nemotron-nano-12b-v2-base.json").read_text()))
    tiny = Architecture.from_hf_config(json.loads((TINY_DIR / "config.json").read_text()))
    assert tiny.pattern == big.pattern
    assert (tiny.count("M"), tiny.count("-"), tiny.count("*")) == (28, 28, 6)
    assert (tiny.hidden, tiny.ffn, tiny.attn_heads, tiny.kv_heads, tiny.head_dim) == (128, 512, 10, 2, 16)
    assert (tiny.mamba_heads, tiny.mamba_head_dim, tiny.mamba_groups, tiny.ssm_state) == (32, 8, 8, 16)
    assert tiny.vocab == 4096 and not tiny.tied_embeddings


def test_heldout_loss_far_below_unigram_entropy(teacher):
    model, tokenizer = teacher
    heldout = DataSpec(split="heldout", seq_len=256, batch_size=64)
    # The baseline: the entropy of the held-out split's own token distribution (~105k tokens; a
    # small sample would bias it low). No context-free model of this text can do better.
    counts = Counter(t for b in token_batches(heldout, tokenizer) for t in b[:, 1:].reshape(-1).tolist())
    total = sum(counts.values())
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    batches = list(token_batches(dataclasses.replace(heldout, batch_size=4, samples=8), tokenizer))
    with torch.no_grad():
        losses = [
            torch.nn.functional.cross_entropy(
                model(input_ids=b).logits[:, :-1].flatten(0, 1), b[:, 1:].flatten()
            )
            for b in batches
        ]
    loss = torch.stack(losses).mean().item()
    assert loss <= 0.65 * entropy, (loss, entropy)  # issue 8: at most 0.65x the unigram entropy


def test_recorded_figures_meet_the_bar_and_match_the_readme():
    stats = json.loads((TINY_DIR / "training.json").read_text())
    assert stats["heldout_loss_nats"] <= 0.65 * stats["heldout_unigram_entropy_nats"]
    assert stats["tokens"] >= 4_500_000  # 6.8x the 696k tokens of the first teacher
    readme = (TINY_DIR / "README.md").read_text()
    assert f"{stats['heldout_loss_nats']:.3f} nats/token" in readme


def test_generate_produces_text(teacher):
    model, tokenizer = teacher
    prompt = tokenizer("def __init__(self", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out.shape[1] > prompt["input_ids"].shape[1] and text.strip()


def test_tokenizer_round_trips_and_has_special_tokens(teacher):
    _, tokenizer = teacher
    text = "for i in range(10):\n    print(f'{i!r} ✓')\n"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)


def test_architecture_round_trips_to_a_buildable_config():
    from minitron.model.load import build_model, resolve_model

    source = resolve_model("tiny")
    model = build_model(source.architecture, device="meta")
    assert model.config.chunk_size == 16 and model.config.num_hidden_layers == 62
