"""The terms of each stage's peak memory per device: what `minitron plan` adds up (minitron.plan.terms
counts each from the architecture; this module says which a stage holds at its peak)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minitron.plan import terms
from minitron.plan.terms import Term
from minitron.units import DTYPE_BYTES, parse_dtype

if TYPE_CHECKING:
    from minitron.plan.stages import PlanConfig

MiB = 2**20
# What the CUDA context takes on each GPU (outside torch's allocator; nvidia-smi shows it).
CUDA_CONTEXT_BYTES = 500 * MiB
# What a minitron process holds besides the planned tensors: python, torch, transformers, the tokenizer
# and the data peak at ~320 MiB before any model, and loading one adds ~100 MiB of transformers' own
# (measured on CPU with bench/scale.py; see BENCHMARKS.md).
CPU_RUNTIME_BYTES = 400 * MiB


def _finish(config: PlanConfig, terms_: list[Term]) -> list[Term]:
    """Add the allocator's share and the runtime (CUDA context or the process's baseline RSS)."""
    counted = sum(t.bytes for t in terms_)
    kind = config.device_kind
    runtime = (
        Term(
            "runtime", CPU_RUNTIME_BYTES, "python + torch + transformers + tokenizer + data before any model"
        )
        if kind == "cpu"
        else Term("runtime", CUDA_CONTEXT_BYTES, "the CUDA context (outside torch's allocator)")
    )
    headroom = Term(
        "allocator headroom", counted * config.headroom_, f"{config.headroom_:.0%} of the terms above"
    )
    return [*terms_, headroom, runtime]


def score_terms(config: PlanConfig) -> list[Term]:
    arch, dtype, tokens = config.teacher, config.teacher_dtype_, config.micro_tokens
    out = [
        Term(
            "teacher weights",
            terms.weights(arch, dtype),
            f"{arch.n_params:,} x {DTYPE_BYTES[dtype]} B ({dtype})",
        )
    ]
    width = terms.forward_transient_bytes(arch, tokens, "float32")
    depth = 0.0
    if config.depth_metric != "none":
        # Every block's input is cached, and the full model's logits over the batch (float32) are the reference.
        depth = (arch.n_blocks + 1) * terms.hidden_bytes(arch, tokens, dtype)
        depth += terms.logit_chunk_bytes(arch, tokens, 2 if config.depth_metric == "kl" else 1)
        depth += terms.logit_chunk_bytes(arch, terms.LOGIT_CHUNK_TOKENS, terms.EVAL_CHUNK_TENSORS)
    out.append(Term(
        "activations",
        max(width, depth + terms.forward_transient_bytes(arch, tokens, dtype)),
        f"{tokens:,} tokens per batch: the widest block's forward (float32 for width scores) or, for depth, "
        f"{arch.n_blocks + 1} block inputs + the reference logits + candidate logit chunks",
    ))  # fmt: skip
    return _finish(config, out)


def search_terms(config: PlanConfig) -> list[Term]:
    """One trial: the teacher, the candidate's narrowed copies, the cached teacher answers, one forward."""
    t, s, dtype, tokens = config.teacher, config.student, parse_dtype(config.eval_dtype), config.micro_tokens
    out = [
        Term("teacher weights", terms.weights(t, dtype), f"{t.n_params:,} x {DTYPE_BYTES[dtype]} B ({dtype})"),
        Term("candidate weights", terms.narrowed_params(t, s) * DTYPE_BYTES[dtype],
             "the tensors the candidate narrows (the rest are views of the teacher's)"),
    ]  # fmt: skip
    cache_tokens = config.eval_samples * config.seq_len if config.device_kind == "cpu" else tokens
    where = (
        "all evaluation batches (in the process)"
        if config.device_kind == "cpu"
        else "one batch on the device"
    )
    out.append(Term("teacher top-k cache", terms.teacher_cache_bytes(cache_tokens, config.top_k),
                    f"top-{config.top_k} of {cache_tokens:,} tokens: {where}"))  # fmt: skip
    out.append(
        Term(
            "activations",
            terms.hidden_bytes(s, tokens, dtype) + terms.forward_transient_bytes(s, tokens, dtype),
            f"{tokens:,} tokens: the residual stream and the widest block's forward",
        )
    )
    out.append(Term("logit chunks", terms.logit_chunk_bytes(s, terms.LOGIT_CHUNK_TOKENS, terms.EVAL_CHUNK_TENSORS),
                    f"{terms.EVAL_CHUNK_TENSORS} x {terms.LOGIT_CHUNK_TOKENS} tokens x {s.vocab:,} vocab, float32"))  # fmt: skip
    return _finish(config, out)


def train_terms(config: PlanConfig, gpus: int | None = None) -> list[Term]:
    """compare (per candidate) and distill: a frozen teacher, a student trained with AdamW, chunked KD."""
    t, s = config.teacher, config.student
    world = config.gpus if gpus is None else gpus
    shard = world if config.fsdp else 1
    t_dtype, s_dtype, tokens = config.teacher_dtype_, parse_dtype(config.student_dtype), config.micro_tokens
    s_bytes = DTYPE_BYTES[s_dtype]
    how = f" / {shard} (FSDP)" if shard > 1 else ""
    out = [
        Term(
            "teacher weights",
            terms.weights(t, t_dtype) / shard,
            f"{t.n_params:,} x {DTYPE_BYTES[t_dtype]} B{how}",
        )
    ]
    if not config.with_teacher:
        out = []
    out += [
        Term("student weights", s.n_params * s_bytes / shard, f"{s.n_params:,} x {s_bytes} B ({s_dtype}){how}"),
        Term("gradients", s.n_params * s_bytes / shard, f"one per student weight{how}"),
        Term("optimizer moments", 2 * s.n_params * 4 / shard, f"AdamW: 2 x {s.n_params:,} x 4 B{how}"),
    ]  # fmt: skip
    if world > 1 and not config.fsdp:
        out.append(
            Term("DDP gradient buckets", s.n_params * s_bytes, "DDP's all-reduce copy of the gradients")
        )
    if config.fsdp and world > 1:
        t_bytes = DTYPE_BYTES[t_dtype] if config.with_teacher else 0
        gathered = 2 * (terms.largest_block_params(s) * s_bytes + terms.largest_block_params(t) * t_bytes)
        gathered += terms.outer_params(s) * s_bytes + terms.outer_params(t) * t_bytes
        out.append(Term("FSDP gathered weights", gathered,
                        "two unsharded blocks of each model (prefetch) + embeddings and heads"))  # fmt: skip
    act = terms.activation_bytes(s, tokens, config.precision_, config.gradient_checkpointing)
    ckpt = (
        "block inputs + one block recomputed"
        if config.gradient_checkpointing
        else "every block's saved tensors"
    )
    out.append(Term("activations", act, f"{tokens:,} tokens per micro-batch, {config.precision_}: {ckpt}"))
    if not config.with_teacher:
        out.append(Term("logits", terms.logit_chunk_bytes(s, tokens, 3),
                        f"3 x {tokens:,} tokens x {s.vocab:,} vocab, float32: logits, log-softmax, gradient"))  # fmt: skip
        return _finish(config, out)
    out.append(
        Term(
            "final hidden states",
            terms.hidden_bytes(t, tokens, t_dtype) + terms.hidden_bytes(s, tokens, "float32"),
            "the teacher's and the student's, kept for the KD loss",
        )
    )
    out.append(Term("KD logit chunks", terms.logit_chunk_bytes(s, config.chunk_tokens, terms.KD_CHUNK_TENSORS),
                    f"{terms.KD_CHUNK_TENSORS} x {config.chunk_tokens} tokens x {s.vocab:,} vocab, float32"))  # fmt: skip
    return _finish(config, out)
