"""Tiny random models shared by every test area (imported by the conftest files and helpers):
NemotronH (TINY), one dense config per Llama-family model type (DENSE_CONFIGS) and one
mixture-of-experts config per MoE family (MOE_CONFIGS)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import torch
from torch import nn

from minitron.importance.scores import Scores
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, MOE, Architecture

# One of every block type, twice, with group structure in both attention (GQA) and Mamba.
TINY = Architecture(
    pattern="M-*M-*-M",
    hidden=32,
    ffn=64,
    attn_heads=4,
    kv_heads=2,
    head_dim=8,
    mamba_heads=8,
    mamba_head_dim=4,
    mamba_groups=2,
    ssm_state=8,
    conv_kernel=4,
    vocab=97,
    extra={
        "chunk_size": 8,
        "layer_norm_epsilon": 1e-5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values so no unit is trivially zero or one (norm weights, D, ...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
            elif p.ndim == 1:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return model


# Dense Llama-family configs (config.json dicts, read through the family adapter like a checkpoint's):
# every bias and norm variant the adapter knows, GQA with 2 KV groups, tied and untied embeddings.
_DENSE_BASE = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 97,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 256,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
DENSE_CONFIGS = {
    "llama": {**_DENSE_BASE, "model_type": "llama"},
    "llama-biases-tied": {
        **_DENSE_BASE,
        "model_type": "llama",
        "attention_bias": True,
        "mlp_bias": True,
        "tie_word_embeddings": True,
    },
    "qwen2": {**_DENSE_BASE, "model_type": "qwen2"},
    "qwen3-tied": {**_DENSE_BASE, "model_type": "qwen3", "tie_word_embeddings": True},
    "mistral": {**_DENSE_BASE, "model_type": "mistral", "sliding_window": None},
}


def dense_arch(name: str) -> Architecture:
    return Architecture.from_hf_config(DENSE_CONFIGS[name])


# Mixture-of-experts configs: NemotronH with every block type (E = MoE: 8 routed experts top 2, one
# shared expert, a sigmoid router with correction bias and scaling) and Qwen3-MoE with one dense layer.
MOE_CONFIGS = {
    "nemotron_h": {
        "model_type": "nemotron_h",
        "hybrid_override_pattern": "ME*EM-E",
        "hidden_size": 32,
        "intermediate_size": 40,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "mamba_num_heads": 8,
        "mamba_head_dim": 4,
        "n_groups": 2,
        "ssm_state_size": 8,
        "conv_kernel": 4,
        "chunk_size": 8,
        "vocab_size": 97,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "moe_shared_expert_intermediate_size": 24,
        "n_shared_experts": 1,
        "routed_scaling_factor": 2.5,
        "norm_topk_prob": True,
        "n_group": 1,
        "topk_group": 1,
        "layer_norm_epsilon": 1e-5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "qwen3_moe": {
        **_DENSE_BASE,
        "model_type": "qwen3_moe",
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "norm_topk_prob": True,
        "mlp_only_layers": [1],
    },
}


def moe_arch(name: str) -> Architecture:
    return Architecture.from_hf_config(MOE_CONFIGS[name])


class MaskedRMSNorm(nn.Module):
    """RMSNorm whose statistics use only the kept channels and whose output is zero elsewhere.

    This is what a hidden-pruned model computes, written on the full width: removed channels of the
    residual stream may hold anything (mixers still write to them) but are never read.
    """

    def __init__(self, norm: nn.Module, keep: torch.Tensor):
        super().__init__()
        self.weight, self.eps, self.mask = norm.weight, norm.variance_epsilon, keep.float()

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        variance = (x.pow(2) * self.mask).sum(-1, keepdim=True) / self.mask.sum()
        return (self.weight.float() * x * torch.rsqrt(variance + self.eps) * self.mask).to(dtype)


def mask_of(kept: torch.Tensor, n: int) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[kept] = True
    return m


def dense_reference(model: nn.Module, sel) -> nn.Module:
    """The source model computing exactly what the pruned one does: removed FFN neurons' up_proj rows
    (and biases) zeroed, removed heads' o_proj columns zeroed, every RMSNorm over kept hidden channels,
    dropped layers skipped."""
    ref = copy.deepcopy(model)
    src, layers = sel.source, ref.model.layers
    with torch.no_grad():
        for i in sel.kept_blocks:
            layer = layers[i]
            if i in sel.ffn:  # (a Qwen3-MoE sparse layer has no dense MLP)
                gone = ~mask_of(sel.ffn[i], src.ffn)
                layer.mlp.up_proj.weight[gone] = 0
                if layer.mlp.up_proj.bias is not None:
                    layer.mlp.up_proj.bias[gone] = 0
            cols = ~mask_of(sel.attn_q_rows(i), src.attn_heads * src.head_dim)
            layer.self_attn.o_proj.weight[:, cols] = 0
        if sel.hidden.numel() != src.hidden:
            keep = mask_of(sel.hidden, src.hidden)
            ref.model.embed_tokens.weight[:, ~keep] = 0
            for layer in layers:
                layer.input_layernorm = MaskedRMSNorm(layer.input_layernorm, keep)
                layer.post_attention_layernorm = MaskedRMSNorm(layer.post_attention_layernorm, keep)
            ref.model.norm = MaskedRMSNorm(ref.model.norm, keep)
    ref.model.layers = nn.ModuleList([layers[i] for i in sel.kept_blocks])
    return ref.eval()


def prune_randomly(model, arch: Architecture, spec, seed: int = 0):
    """(pruned model, Selection) of `model` pruned to `spec`, ranked by random scores of `seed`."""
    from minitron.prune.select import select_units
    from minitron.prune.slicing import prune_model
    from minitron.prune.target import resolve_target

    scores = random_scores(arch, seed=seed)
    sel = select_units(arch, resolve_target(arch, spec, scores), scores)
    return prune_model(model, sel), sel


def logits_of(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def random_scores(arch: Architecture, seed: int = 0, fingerprint: str | None = None) -> Scores:
    """Scores of every kind with random values (valid for pruning; the values only fix a ranking)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {"hidden": torch.rand(arch.hidden, generator=g)}
    for i, kind in enumerate(arch.pattern):
        for part in BLOCK_PARTS[kind]:
            if part == MLP:
                tensors[f"ffn.{i}"] = torch.rand(arch.ffn, generator=g)
            elif part == ATTENTION:
                tensors[f"attn_heads.{i}"] = torch.rand(arch.attn_heads, generator=g)
            elif part == MAMBA:
                tensors[f"mamba.{i}"] = torch.rand(arch.mamba_heads, arch.mamba_head_dim, generator=g)
            elif part == MOE:
                tensors[f"experts.{i}"] = torch.rand(arch.experts, generator=g)
                tensors[f"expert_ffn.{i}"] = torch.rand(arch.experts, arch.expert_ffn, generator=g)
                if arch.shared_ffn:
                    tensors[f"shared_ffn.{i}"] = torch.rand(arch.shared_ffn, generator=g)
    tensors["depth.scores"] = torch.rand(arch.n_blocks, generator=g)
    tensors["depth.order"] = torch.argsort(tensors["depth.scores"])
    header = {"model": "test", "fingerprint": fingerprint, "architecture": arch.summary()}
    return Scores(tensors=tensors, header=header)


def row_sizes(row: dict) -> dict[str, int]:
    """The width-axis sizes of a candidates-file row (the axes the row's model has)."""
    from minitron.model.axes import width_axes

    return {a.name: row[a.name] for a in width_axes() if row.get(a.name) is not None}


def generate_in_fresh_process(model_dir, tokenizer_dir, prompt: str, new_tokens: int) -> dict:
    """Load a saved checkpoint with plain transformers in a new interpreter and greedy-generate with and
    without the cache: {"type": model_type, "prompt": prompt ids, "cached": ids, "plain": ids}."""
    script = textwrap.dedent(
        f"""
        import json
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(model_dir)!r}).eval()
        tok = AutoTokenizer.from_pretrained({str(tokenizer_dir)!r})
        ids = tok({prompt!r}, return_tensors="pt").input_ids
        kw = dict(max_new_tokens={new_tokens}, do_sample=False, pad_token_id=0, eos_token_id=None)
        cached = model.generate(ids, use_cache=True, **kw)
        plain = model.generate(ids, use_cache=False, **kw)
        print(json.dumps({{"type": model.config.model_type, "prompt": ids.tolist(),
                          "cached": cached.tolist(), "plain": plain.tolist()}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
