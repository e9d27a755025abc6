"""Pruned mixture-of-experts models (NemotronH E blocks, Qwen3-MoE layers) equal exact references built
on the unpruned model: keeping everything reproduces the logits; a removed expert equals that expert
never being chosen (its router choice score forced to -inf); sliced expert neurons equal zeroed ones;
a dropped MoE block equals skipping it. Then the written checkpoint loads and generates elsewhere."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from prune_helpers import reference_model
from tiny_models import (
    MOE_CONFIGS,
    dense_reference,
    generate_in_fresh_process,
    logits_of,
    mask_of,
    moe_arch,
    prune_randomly,
    random_scores,
    randomize_,
)

from minitron.errors import MinitronError
from minitron.model.arch import Architecture
from minitron.model.load import build_model
from minitron.prune.select import select_units
from minitron.prune.target import TargetSpec, resolve_target


def _model(arch: Architecture):
    model = randomize_(build_model(arch, seed=0), seed=0)
    for module in model.modules():  # a correction bias that matters, as in a trained NemotronH router
        if hasattr(module, "e_score_correction_bias"):
            module.e_score_correction_bias.normal_(0, 0.2, generator=torch.Generator().manual_seed(4))
    return model


def _never_choose(gate, removed: torch.Tensor) -> None:
    """Qwen3-MoE's softmax router with the removed experts' logits at -inf (transformers' own steps)."""

    def forward(module, args, output):
        logits = F.linear(args[0].reshape(-1, module.hidden_dim), module.weight)
        logits[:, removed] = float("-inf")
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        top, index = torch.topk(probs, module.top_k, dim=-1)
        if module.norm_topk_prob:
            top = top / top.sum(dim=-1, keepdim=True)
        return logits, top.to(logits.dtype), index

    gate.register_forward_hook(forward)


def moe_reference(model, sel):
    """The unpruned model with removed experts never chosen, removed neurons' down_proj columns zeroed
    (each expert's own), then every other axis referenced as for the family's dense blocks."""
    masked = copy.deepcopy(model)
    src = sel.source
    with torch.no_grad():
        for i in sel.kept_blocks:
            layer = masked.model.layers[i]
            moe = layer.mixer if src.model_type == "nemotron_h" else layer.mlp
            if i not in sel.experts:
                continue
            removed = ~mask_of(sel.experts[i], src.experts)
            if src.model_type == "nemotron_h":
                moe.gate.e_score_correction_bias[removed] = float("-inf")  # choice score = sigmoid + bias
            elif removed.any():
                _never_choose(moe.gate, removed)
            for row, e in enumerate(sel.experts[i].tolist()):
                moe.experts.down_proj[e][:, ~mask_of(sel.expert_ffn[i][row], src.expert_ffn)] = 0
            if i in sel.shared_ffn:
                moe.shared_experts.down_proj.weight[:, ~mask_of(sel.shared_ffn[i], src.shared_ffn)] = 0
    if src.model_type == "nemotron_h":
        return reference_model(masked, sel)
    return dense_reference(masked, sel)


@pytest.fixture(params=list(MOE_CONFIGS))
def moe(request):
    arch = moe_arch(request.param)
    return arch, _model(arch)


@pytest.fixture
def ids():
    return torch.randint(3, 97, (2, 20), generator=torch.Generator().manual_seed(1))


def test_keeping_everything_reproduces_thelogits_of(moe, ids):
    arch, model = moe
    full = TargetSpec(experts=arch.experts, expert_ffn=arch.expert_ffn, shared_ffn=arch.shared_ffn or None)
    for spec in (TargetSpec(), full):
        pruned, _ = prune_randomly(model, arch, spec)
        assert torch.equal(logits_of(pruned, ids), logits_of(model, ids))


def _specs(arch: Architecture) -> dict[str, TargetSpec]:
    moe_block = arch.pattern.index("E" if "E" in arch.pattern else "S")
    shared = {"shared_ffn": 13} if arch.shared_ffn else {}
    specs = {
        "experts7": TargetSpec(experts=7),
        "experts2": TargetSpec(experts=2),  # as few as the top-k
        "expert_ffn8": TargetSpec(expert_ffn=8),
        "drop_moe_block": TargetSpec(drop_blocks=(moe_block,)),
        "hidden": TargetSpec(hidden=24),
        "all": TargetSpec(
            experts=5, expert_ffn=8, hidden=16, attn_heads=2, drop_blocks=(moe_block,), **shared
        ),
    }
    if arch.shared_ffn:
        specs["shared_ffn7"] = TargetSpec(shared_ffn=7)
    return specs


@pytest.mark.parametrize(
    ("name", "case"), [(name, case) for name in MOE_CONFIGS for case in _specs(moe_arch(name))]
)
def test_removal_equals_never_choosing_zeroing_or_skipping(name, case, ids):
    arch = moe_arch(name)
    model = _model(arch)
    pruned, sel = prune_randomly(model, arch, _specs(arch)[case])
    got = logits_of(pruned, ids)
    torch.testing.assert_close(got, logits_of(moe_reference(model, sel), ids))
    assert not torch.allclose(got, logits_of(model, ids), atol=1e-3)
    assert sum(p.numel() for p in pruned.parameters()) == sel.target.n_params
    assert pruned.config.num_experts_per_tok == arch.experts_per_token


def test_removed_experts_are_chosen_by_score_per_block(moe):
    arch, _ = moe
    scores = random_scores(arch, seed=3)
    sel = select_units(arch, resolve_target(arch, TargetSpec(experts=4, expert_ffn=8), scores), scores)
    for i, kept in sel.experts.items():
        s = scores.get(f"experts.{i}")
        assert set(kept.tolist()) == set(torch.topk(s, 4).indices.tolist())
        for row, e in enumerate(kept.tolist()):  # each expert keeps its own best neurons
            assert set(sel.expert_ffn[i][row].tolist()) == set(
                torch.topk(scores.get(f"expert_ffn.{i}")[e], 8).indices.tolist()
            )
    assert len({tuple(k.tolist()) for k in sel.experts.values()}) > 1  # chosen per block


def test_grouped_router_keeps_the_same_count_per_group(ids):
    arch = Architecture.from_hf_config({**MOE_CONFIGS["nemotron_h"], "n_group": 2, "topk_group": 2})
    model = _model(arch)
    pruned, sel = prune_randomly(model, arch, TargetSpec(experts=6), seed=5)
    for kept in sel.experts.values():
        assert sorted((kept // 4).tolist()) == [0, 0, 0, 1, 1, 1]  # 8 experts, 2 groups of 4
    torch.testing.assert_close(logits_of(pruned, ids), logits_of(moe_reference(model, sel), ids))
    assert pruned.config.n_group == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TargetSpec(experts=9), r"experts 9 > source 8"),
        (TargetSpec(experts=1), r"experts \(1\) must be at least the experts every token is routed to"),
        (TargetSpec(expert_ffn=24), r"expert_ffn 24 > source 16"),
        (
            TargetSpec(expert_ffn=12),
            r"expert_ffn 12: MoE models need it in multiples of 8 .*nearest legal: 8 or 16",
        ),
    ],
)
def test_impossible_expert_targets_are_one_clear_error(moe, spec, message):
    arch, _ = moe
    with pytest.raises(MinitronError, match=message):
        resolve_target(arch, spec, random_scores(arch))


def test_expert_axes_need_scores_and_moe_blocks(moe, tiny_arch):
    arch, _ = moe
    with pytest.raises(MinitronError, match=r"--experts.*needs --scores"):
        select_units(arch, resolve_target(arch, TargetSpec(experts=4), None), None)
    with pytest.raises(MinitronError, match=r"--expert-ffn, --experts: NemotronH models have no such axis"):
        resolve_target(tiny_arch, TargetSpec(experts=4, expert_ffn=3), None)
    if not arch.shared_ffn:
        with pytest.raises(MinitronError, match=r"--shared-ffn: Qwen3-MoE models have no such axis"):
            resolve_target(arch, TargetSpec(shared_ffn=4), None)


@pytest.mark.parametrize("name", MOE_CONFIGS)
def test_prune_command_writes_a_checkpoint_that_generates_in_a_fresh_process(name, tmp_path):
    from typer.testing import CliRunner

    from minitron.cli import app
    from minitron.data import train_bpe_tokenizer
    from minitron.importance.scores import save_scores

    tokenizer = train_bpe_tokenizer([f"{i} plus {i} is {2 * i}" for i in range(200)], vocab_size=120)
    arch = dataclasses.replace(moe_arch(name), vocab=len(tokenizer))
    model = _model(arch)
    model.save_pretrained(tmp_path / "src")
    tokenizer.save_pretrained(tmp_path / "src")
    scores = random_scores(arch, seed=1)
    save_scores(scores, tmp_path / "s.safetensors")
    extra = ["--shared-ffn", "12"] if arch.shared_ffn else []
    args = ["prune", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--scores", str(tmp_path / "s.safetensors"),
            "--experts", "4", "--expert-ffn", "8", "--drop-blocks", "3", "--max-shard-size", "20KB", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # The streamed shards equal the in-memory pruning of the same selection.
    spec = TargetSpec(experts=4, expert_ffn=8, drop_blocks=(3,), shared_ffn=12 if arch.shared_ffn else None)
    expected, sel = prune_randomly(model, arch, spec, seed=1)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ids = torch.randint(3, arch.vocab, (1, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits_of(loaded, ids), logits_of(expected, ids))
    assert Architecture.from_hf_config(loaded.config) == sel.target
    out = generate_in_fresh_process(tmp_path / "out", tmp_path / "out", "3 plus 3 is", 6)
    assert out["type"] == arch.model_type and out["cached"] == out["plain"]
    assert len(out["cached"][0]) == len(out["prompt"][0]) + 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--experts", "20"], r"^error: target is not a pruning of the source: experts 20 > source 8$"),
        (["--experts", "1"], r"^error: experts \(1\) must be at least the experts every token is routed to"),
        (
            ["--experts", "5", "--expert-ffn", "12"],
            r"^error: expert_ffn 12: MoE models need it in multiples of 8",
        ),
    ],
)
def test_bad_expert_targets_are_one_line_and_write_nothing(tmp_path, extra, message):
    import re

    from typer.testing import CliRunner

    from minitron.cli import app

    ckpt = tmp_path / "ckpt"
    _model(moe_arch("nemotron_h")).save_pretrained(ckpt)
    result = CliRunner().invoke(app, ["prune", str(ckpt), *extra, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.output
    assert re.search(message, result.stderr.strip()), result.stderr
    assert not (tmp_path / "out").exists()
