"""Regenerate the built-in `tiny-moe` teacher at minitron/assets/tiny-moe/ by upcycling `tiny`.

Every MLP block of `tiny` (62 blocks: 28 Mamba, 28 MLP, 6 attention) becomes a mixture of experts,
which gives Nemotron 3 Nano's block vocabulary (Mamba and MoE alternating, attention every few
blocks) at toy widths. Upcycling one MLP (512 relu2 neurons):

    shared expert   its 128 most important neurons (||up row|| x ||down column||), copied exactly
    16 routed       the other 384 neurons in 16 distinct chunks of 24 (fine-grained upcycling:
                    no two experts start as copies, so the router has real choices to learn), top
                    4 per token, sigmoid router initialised small, weights normalised over the 4
                    picks and scaled by 4 (each pick ~ x1)

and the model is then trained on with next-token cross-entropy on the built-in corpus's train
split by minitron's own training loop (one thread, under nice). Everything else is `tiny`'s.

    nice python scripts/make_tiny_moe.py --steps 300 --run runs/make-tiny-moe
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_tiny import heldout_loss, machine, parse_args, pretrain_config, unigram_entropy, write_asset  # noqa: E402

from minitron.data import token_batches  # noqa: E402
from minitron.distill.trainer import train  # noqa: E402
from minitron.model.arch import MLP, MOE, Architecture  # noqa: E402
from minitron.model.load import build_model, load_model, load_tokenizer, resolve_model  # noqa: E402

EXPERTS, TOP_K = 16, 4
SHARED_FFN = 128
HELDOUT_SEQUENCES = 64


def moe_architecture(tiny: Architecture) -> Architecture:
    expert_ffn = (tiny.ffn - SHARED_FFN) // EXPERTS
    extra = {**tiny.extra, "routed_scaling_factor": float(TOP_K), "norm_topk_prob": True, "n_group": 1,
             "topk_group": 1, "n_shared_experts": 1}  # fmt: skip
    return dataclasses.replace(
        tiny,
        pattern=tiny.pattern.replace(MLP, MOE),
        experts=EXPERTS,
        experts_per_token=TOP_K,
        expert_ffn=expert_ffn,
        shared_ffn=SHARED_FFN,
        extra=extra,
    )


@torch.no_grad()
def upcycle(tiny_model, arch: Architecture, seed: int = 0):
    """The MoE model with every other weight copied from `tiny` and every MLP split into experts."""
    g = torch.Generator().manual_seed(seed)
    model = build_model(arch, seed=seed)
    source = tiny_model.state_dict()
    target = model.state_dict()
    for key, value in source.items():
        if key in target and target[key].shape == value.shape:
            target[key].copy_(value)
    for i, block in enumerate(model.model.layers):
        if arch.pattern[i] != MOE:
            continue
        mlp = tiny_model.model.layers[i].mixer
        up, down = mlp.up_proj.weight, mlp.down_proj.weight  # (ffn, H), (H, ffn)
        importance = up.norm(dim=1) * down.norm(dim=0)
        order = torch.argsort(importance, descending=True)
        shared, rest = order[:SHARED_FFN], order[SHARED_FFN:]
        moe = block.mixer
        moe.shared_experts.up_proj.weight.copy_(up[shared])
        moe.shared_experts.down_proj.weight.copy_(down[:, shared])
        # Each expert takes every 16th neuron of the rest in importance order, so all start alike in size.
        for e, neurons in enumerate(rest.view(-1, EXPERTS).T):
            moe.experts.up_proj[e].copy_(up[neurons])
            moe.experts.down_proj[e].copy_(down[:, neurons])
        moe.gate.weight.normal_(0, 0.02, generator=g)
        moe.gate.e_score_correction_bias.zero_()
    return model


def main() -> None:
    args = parse_args(__doc__, "tiny-moe", steps=300, lr=1e-3)

    tiny = resolve_model("tiny")
    tokenizer = load_tokenizer(tiny)
    tiny_model = load_model(tiny)
    arch = moe_architecture(tiny.architecture)
    model = upcycle(tiny_model, arch)
    config = pretrain_config(
        "tiny-moe", args.run, args.steps, args.lr, args.batch_size, args.precision, args.resume,
        warmup_steps=20, eval_every=50,
    )  # fmt: skip
    heldout = list(
        token_batches(dataclasses.replace(config.data, split="heldout", samples=HELDOUT_SEQUENCES), tokenizer)
    )
    entropy = unigram_entropy(heldout)
    print(json.dumps({"upcycled_heldout_loss": round(heldout_loss(model, heldout), 4), "unigram": entropy}))
    result = train(
        config, model=model, tokenizer=tokenizer, provenance={"script": "scripts/make_tiny_moe.py"}
    )
    model.to(torch.bfloat16).float()  # the figures are those of the shipped (bfloat16) weights
    start = time.perf_counter()
    loss = heldout_loss(model, heldout)
    stats = {
        "steps": result.step,
        "tokens": result.tokens,
        "train_seconds": round(result.elapsed_s),
        "machine": machine(),
        "upcycled_from": "tiny",
        "heldout_tokens": sum(b[:, 1:].numel() for b in heldout),
        "heldout_loss_nats": round(loss, 4),
        "heldout_unigram_entropy_nats": round(entropy, 4),
        "heldout_loss_over_unigram": round(loss / entropy, 4),
        "heldout_eval_seconds": round(time.perf_counter() - start),
        "params": arch.n_params,
        "active_params": arch.n_active_params,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("resume", "progress")},
    }
    write_asset(
        Path(args.out), model, tokenizer, stats, Path(args.run) / "metrics.jsonl", readme(stats, arch)
    )
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, indent=2))


def readme(s: dict, arch: Architecture) -> str:
    c = s["config"]
    return f"""# tiny-moe: a toy mixture-of-experts Nemotron-H teacher, upcycled from `tiny`

A `NemotronHForCausalLM` whose 28 MLP blocks of `tiny` became mixture-of-experts blocks (28 Mamba,
28 MoE, 6 attention): per MoE block {arch.experts} routed experts of FFN {arch.expert_ffn} (relu2), top
{arch.experts_per_token}, one shared expert of FFN {arch.shared_ffn}, a sigmoid router; hidden {arch.hidden};
{s["params"]:,} parameters, {s["active_params"]:,} active per token; bfloat16; `tiny`'s tokenizer.

Regenerate with `python scripts/make_tiny_moe.py --steps {s["steps"]}` (see the script for the upcycling).

| | |
|---|---|
| training | {s["steps"]} steps x {c["data"]["batch_size"]} x {c["data"]["seq_len"]} tokens = {s["tokens"]:,} tokens after upcycling, next-token cross-entropy |
| time | {s["train_seconds"] / 60:.0f} min on {s["machine"]}, shared with other jobs |
| held-out loss | **{s["heldout_loss_nats"]:.3f} nats/token** ({s["heldout_loss_over_unigram"]:.2f} x the unigram entropy {s["heldout_unigram_entropy_nats"]:.3f}) |
"""


if __name__ == "__main__":
    main()
