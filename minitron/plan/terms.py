"""The terms of a stage's peak memory and its FLOPs, from an `Architecture` alone (no torch, no weights).

Parameter counts are the architecture's own (`Architecture.n_params`, `block_params`: the family
adapters count them). What this module adds is what training and scoring hold besides the weights:

    activations   elements each block saves for its backward, per token (`saved_elements_per_token`)
    logit chunks  (tokens in a chunk) x vocab float32 tensors alive at once in the KD loss / depth scoring
    teacher cache the search's top-k teacher answers (ids int64, log-probs float32, indices int64 once loaded)

FLOPs: a forward costs 2 x params per token, a training step 6 x params (forward + backward) and 8 x
with activation checkpointing (every block's forward runs again in the backward).
"""

from __future__ import annotations

from dataclasses import dataclass

from minitron.importance.depth import LOGIT_CHUNK_TOKENS, depth_block_runs, depth_steps
from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, Architecture
from minitron.model.axes import width_axes
from minitron.units import DTYPE_BYTES

__all__ = ["LOGIT_CHUNK_TOKENS"]

# Tensors of one KD chunk alive at the peak of its backward, each (chunk_tokens, vocab) float32: the
# student and teacher logits, both log-softmaxes, the teacher probabilities, their product and the
# gradient of the student logits (losses.kd_sums; the chunk is recomputed under checkpoint).
KD_CHUNK_TENSORS = 8
# Depth scoring and the search's evaluation keep a logits chunk, its log-softmax, and (top-k KL)
# the copy with the teacher's tokens masked out: (LOGIT_CHUNK_TOKENS, vocab) float32 each.
EVAL_CHUNK_TENSORS = 4
# The Mamba-2 chunk size of models whose config does not say (transformers' NemotronH default).
DEFAULT_CHUNK_SIZE = 256


def mlp_matrices(arch: Architecture) -> int:
    """Weight matrices each FFN neuron has a row or column in: 2 (up, down; relu2) or 3 (gate, up, down)."""
    per_mlp = arch.family.ffn_unit_params(arch) / max(1, arch.count_part(MLP))
    return max(2, round(per_mlp / arch.hidden))


def saved_elements_per_token(arch: Architecture, kind: str) -> float:
    """Elements one block of `kind` keeps for its backward, per token.

    Counted with `torch.autograd.graph.saved_tensors_hooks` on single blocks of minitron's PyTorch
    path (tests/plan/test_terms.py checks the counts against that measurement): each pre-norm keeps
    3 x hidden (its float32 input, the normalised and the scaled output); an MLP keeps 2 tensors of
    ffn per matrix beyond the first (relu2: up output and its activation; gated: gate, up, act, product);
    attention keeps q twice (its projection and the SDPA output), k and v twice, one log-sum-exp per
    head; the Mamba-2 mixer keeps its in_proj output, conv and gate tensors (~13 x d_inner, ~10 x
    groups x state), per-head decays over its chunk (2 x heads x chunk) and the chunk-boundary states.
    With the mamba-ssm CUDA kernels the Mamba scan keeps less; this count is then an upper bound.
    """
    h = arch.hidden
    elements = 0.0
    for part in BLOCK_PARTS[kind]:
        elements += 3 * h + 1  # the pre-norm of this mixer
        if part == MLP:
            elements += 2 * (mlp_matrices(arch) - 1) * arch.ffn
        elif part == ATTENTION:
            q, kv = arch.attn_heads * arch.head_dim, arch.kv_heads * arch.head_dim
            elements += 2 * q + 2 * kv + arch.attn_heads
        elif part == MAMBA:
            chunk = mamba_chunk(arch)
            heads, state = arch.mamba_heads, arch.ssm_state
            elements += (
                13 * arch.mamba_inner
                + 10 * arch.mamba_groups * state
                + 47 * heads
                + 2 * heads * chunk
                + 0.5 * arch.mamba_inner * state / chunk
            )
    return elements


def mamba_chunk(arch: Architecture) -> int:
    return int(arch.extra.get("chunk_size") or DEFAULT_CHUNK_SIZE)


def activation_dtype_bytes(precision: str, part: str) -> int:
    """Bytes of a saved activation: the Mamba scan runs in float32 whatever the autocast."""
    if part == MAMBA:
        return 4
    return 2 if precision in ("bf16", "bfloat16", "fp16", "float16") else 4


def block_activation_bytes(arch: Architecture, kind: str, tokens: int, precision: str) -> float:
    """Bytes one block of `kind` keeps for its backward over `tokens` tokens."""
    part = MAMBA if MAMBA in BLOCK_PARTS[kind] else BLOCK_PARTS[kind][0]
    return saved_elements_per_token(arch, kind) * tokens * activation_dtype_bytes(precision, part)


def activation_bytes(arch: Architecture, tokens: int, precision: str, checkpointing: bool) -> float:
    """Activations kept for the backward of one micro-batch of `tokens` tokens.

    Without checkpointing every block keeps its tensors. With it, every block keeps only its input
    (hidden per token) and one block at a time holds its tensors again while its backward runs.
    """
    per_block = {kind: block_activation_bytes(arch, kind, tokens, precision) for kind in set(arch.pattern)}
    if not checkpointing:
        return sum(per_block[kind] for kind in arch.pattern)
    inputs = arch.n_blocks * tokens * arch.hidden * activation_dtype_bytes(precision, MLP)
    return inputs + max(per_block.values())


def forward_transient_bytes(arch: Architecture, tokens: int, dtype: str) -> float:
    """The widest block's tensors during an inference forward (nothing is kept for a backward)."""
    return (
        max(saved_elements_per_token(arch, kind) for kind in set(arch.pattern)) * tokens * DTYPE_BYTES[dtype]
    )


def hidden_bytes(arch: Architecture, tokens: int, dtype: str) -> int:
    """One (tokens, hidden) tensor of the residual stream."""
    return tokens * arch.hidden * DTYPE_BYTES[dtype]


def logit_chunk_bytes(arch: Architecture, chunk_tokens: int, tensors: int) -> int:
    return tensors * chunk_tokens * arch.vocab * 4


def teacher_cache_bytes(tokens: int, top_k: int) -> int:
    """The search's teacher cache once loaded: ids int64, log-probs float32 and indices int64 (k each)."""
    return tokens * (8 + top_k * (4 + 8))


def weights(arch: Architecture, dtype: str) -> int:
    return arch.n_params * DTYPE_BYTES[dtype]


def narrowed_params(source: Architecture, candidate: Architecture) -> int:
    """Parameters of the tensors a candidate pruned in memory copies (search.objective.prune_shared):
    every tensor when the hidden size changes, else the blocks whose mixer narrows; the rest are views."""
    narrowed = {a.part for a in width_axes() if getattr(candidate, a.name) != getattr(source, a.name)}
    if None in narrowed:  # an axis of every tensor changed (hidden)
        return candidate.n_params
    return sum(candidate.block_params(c) for c in candidate.pattern if narrowed & set(BLOCK_PARTS[c]))


def outer_params(arch: Architecture) -> int:
    """Parameters outside the blocks: embeddings, the output head and the final norm."""
    parts = arch.params_by_part()
    return parts["embeddings"] + parts["lm_head"] + parts["final_norm"]


def largest_block_params(arch: Architecture) -> int:
    return max(arch.block_params(kind) for kind in set(arch.pattern))


@dataclass(frozen=True)
class Term:
    """One line of a stage's memory: its name, bytes per device, and how it was counted."""

    name: str
    bytes: float
    how: str

    def to_dict(self) -> dict:
        return {"name": self.name, "bytes": int(self.bytes), "how": self.how}


# ---- FLOPs ---------------------------------------------------------------------------------------
def forward_flops(params: int, tokens: float) -> float:
    return 2 * params * tokens


def train_flops(params: int, tokens: float, checkpointing: bool) -> float:
    return (8 if checkpointing else 6) * params * tokens


def depth_scoring_flops(
    arch: Architecture, tokens: float, mode: str, metric: str, iterations: int | None
) -> float:
    """Depth scoring: every block run over every token, plus each candidate's logits (not for cosine)."""
    n = arch.n_blocks
    mean_block = sum(arch.block_params(k) for k in arch.pattern) / n
    flops = 2 * mean_block * depth_block_runs(n, mode, metric, iterations) * tokens
    if metric != "cosine":
        candidates = sum(n - s for s in range(depth_steps(n, mode, iterations)))
        flops += 2 * arch.vocab * arch.hidden * candidates * tokens
    return flops
