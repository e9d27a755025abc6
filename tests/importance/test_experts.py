"""Importance of routed experts, their neurons and the shared expert's, against transformers' own
expert modules (never minitron's recomputation of them)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny_models import MOE_CONFIGS, moe_arch, randomize_
from typer.testing import CliRunner

from minitron.importance.scores import load_scores
from minitron.importance.width import ExpertStats, score_width
from minitron.model.arch import BLOCK_PARTS, MOE
from minitron.model.load import build_model

IDS = torch.randint(3, 97, (3, 16), generator=torch.Generator().manual_seed(2))
DOCUMENTS = [f"def g{i}(y):\n    return y - {i} * {i % 5}  # expert corpus line {i}\n" for i in range(300)]


def _moe_model(name: str):
    model = randomize_(build_model(moe_arch(name), seed=0), seed=0)
    if name == "nemotron_h":
        for block in model.model.layers:  # a correction bias that matters, as in a trained router
            if block.block_type == "moe":
                block.mixer.gate.e_score_correction_bias.normal_(
                    0, 0.1, generator=torch.Generator().manual_seed(3)
                )
    return model


def _moe_modules(model, arch):
    """(block index, experts module, the router, the module whose input is the MoE's input)."""
    out = []
    for i, block in enumerate(model.model.layers):
        if MOE in BLOCK_PARTS[arch.pattern[i]]:
            moe = block.mixer if arch.model_type == "nemotron_h" else block.mlp
            out.append((i, moe.experts, moe.gate, moe))
    return out


def _reference(model, arch, ids, mask=None):
    """Per MoE block, from the MoE input and transformers' router and experts module run on one
    expert at a time: REAP, frequency, mean norm, and each expert's mean-l2 neuron scores."""
    inputs = {}
    handles = [
        moe.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0]))
        for i, _, _, moe in _moe_modules(model, arch)
    ]
    with torch.no_grad():
        model(ids, attention_mask=mask)
    for h in handles:
        h.remove()
    real = torch.ones(ids.numel(), dtype=torch.bool) if mask is None else mask.flatten().bool()
    out = {}
    for i, experts, gate, _ in _moe_modules(model, arch):
        x = inputs[i].reshape(-1, arch.hidden)
        with torch.no_grad():
            _, weights, index = gate(x)
            reap, freq, norm, channels = [], [], [], []
            for e in range(arch.experts):
                pos, slot = (index == e).nonzero(as_tuple=True)
                keep = real[pos]
                pos, slot = pos[keep], slot[keep]
                freq.append(pos.numel() / real.sum().item())
                if not pos.numel():
                    reap.append(0.0), norm.append(0.0), channels.append(torch.zeros(arch.expert_ffn))
                    continue
                one = torch.full((pos.numel(), 1), e)
                y = experts(x[pos], one, torch.ones(pos.numel(), 1)).norm(dim=-1)  # the expert's own output
                reap.append((weights[pos, slot] * y).mean().item())
                norm.append(y.mean().item())
                # neurons: the down projection's input, read through transformers' module with that
                # expert's down projection made the identity on the first expert_ffn outputs (H >= I)
                saved = experts.down_proj.data[e].clone()
                experts.down_proj.data[e] = torch.eye(arch.hidden, arch.expert_ffn)
                try:
                    act = experts(x[pos], one, torch.ones(pos.numel(), 1))[:, : arch.expert_ffn].abs()
                finally:
                    experts.down_proj.data[e] = saved
                sample = pos // ids.shape[1]
                per_sample = torch.zeros(ids.shape[0], arch.expert_ffn).index_add_(0, sample, act)
                count = torch.bincount(sample, minlength=ids.shape[0]).clamp(min=1)[:, None]
                channels.append((per_sample / count).square().sum(0).sqrt())
        out[i] = {
            "reap": torch.tensor(reap),
            "frequency": torch.tensor(freq),
            "norm": torch.tensor(norm),
            "expert_ffn": torch.stack(channels),
        }
    return out


@pytest.mark.parametrize("name", MOE_CONFIGS)
@pytest.mark.parametrize("how", ["reap", "frequency", "norm"])
def test_expert_scores_equal_an_independent_reference(name, how):
    model, arch = _moe_model(name), moe_arch(name)
    scores = score_width(model, [IDS], expert_score=how)
    reference = _reference(model, arch, IDS)
    assert set(reference) == {int(k.split(".")[1]) for k in scores if k.startswith("experts.")}
    for i, ref in reference.items():
        torch.testing.assert_close(scores[f"experts.{i}"], ref[how].float(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(scores[f"expert_ffn.{i}"], ref["expert_ffn"], rtol=1e-4, atol=1e-6)
        assert scores[f"experts.{i}"].shape == (arch.experts,)
        if arch.shared_ffn:
            assert scores[f"shared_ffn.{i}"].shape == (arch.shared_ffn,)
            assert (scores[f"shared_ffn.{i}"] > 0).all()
    # the options rank differently (else the option would mean nothing)
    other = score_width(model, [IDS], expert_score="frequency" if how != "frequency" else "reap")
    assert any(not torch.equal(scores[k], other[k]) for k in scores if k.startswith("experts."))


def test_padding_is_left_out_of_expert_scores():
    model, arch = _moe_model("qwen3_moe"), moe_arch("qwen3_moe")
    mask = torch.ones_like(IDS)
    mask[1, 10:] = 0
    scores = score_width(model, [(IDS, mask)])
    for i, ref in _reference(model, arch, IDS, mask).items():
        torch.testing.assert_close(scores[f"experts.{i}"], ref["reap"].float(), rtol=1e-4, atol=1e-6)


def test_a_never_routed_expert_scores_lowest_not_nan():
    model, arch = _moe_model("nemotron_h"), moe_arch("nemotron_h")
    never = 5
    for _, _, gate, _ in _moe_modules(model, arch):
        gate.e_score_correction_bias[never] = -100.0  # never among the top-k
    for how in ("reap", "frequency", "norm"):
        scores = score_width(model, [IDS], expert_score=how)
        for key in (k for k in scores if k.startswith("experts.")):
            s = scores[key]
            assert torch.isfinite(s).all() and s[never] == 0 and (s[torch.arange(8) != never] > 0).all()
            assert torch.isfinite(scores[key.replace("experts", "expert_ffn")]).all()
    stats = ExpertStats(3, 4, torch.device("cpu"))
    assert stats.score("reap").tolist() == [0, 0, 0] and stats.score("frequency").tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def moe_checkpoint(tmp_path_factory):
    from importance_helpers import VOCAB

    from minitron.data import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("moe")
    tokenizer = train_bpe_tokenizer(DOCUMENTS, VOCAB)
    arch = moe_arch("nemotron_h")
    model = randomize_(build_model(dataclasses.replace(arch, vocab=len(tokenizer)), seed=0), seed=0)
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    data = root / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS))
    return root / "ckpt", data


def test_score_command_writes_expert_scores(moe_checkpoint, tmp_path):
    from minitron.cli import app

    ckpt, data = moe_checkpoint
    out = tmp_path / "s.safetensors"
    args = ["score", str(ckpt), "--data", str(data), "--samples", "4", "--seq-len", "16", "--batch-size", "2",
            "--out", str(out), "--depth-mode", "one-shot", "--expert-score", "frequency", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    arch = moe_arch("nemotron_h")
    assert summary["width"]["routed experts"]["blocks"] == arch.count("E") == 3
    assert summary["width"]["expert FFN neurons"]["units"] == arch.experts * arch.expert_ffn
    assert summary["width"]["shared expert neurons"]["units"] == arch.shared_ffn
    # MoE blocks compete in the depth ranking like every other block
    assert sorted(row["block"] for row in summary["depth"]) == list(range(arch.n_blocks))
    assert sorted(row["type"] for row in summary["depth"] if row["type"] == "moe") == ["moe"] * 3
    scores = load_scores(out)
    assert scores.header["settings"]["expert_score"] == "frequency"
    assert scores.get("experts.1").sum().item() == pytest.approx(arch.experts_per_token)  # shares of k picks
    assert scores.get("expert_ffn.3").shape == (arch.experts, arch.expert_ffn)
    assert scores.header["architecture"]["experts"] == arch.experts
    bad = CliRunner().invoke(app, [*args[:-3], "--expert-score", "gini"])
    assert bad.exit_code == 1 and "--expert-score must be one of reap, frequency, norm" in bad.output
