"""The teacher's answers on the evaluation batches, computed once per study and kept on disk.

For every evaluation token the teacher's top-k log-probabilities and token indices are stored (the
remaining mass is 1 - sum(exp(top-k)), which `topk_kl` uses); the token ids ride along so workers
need neither the tokenizer nor the data. Logits are computed LOGIT_CHUNK_TOKENS tokens at a time,
so no full-vocabulary tensor over all evaluation tokens ever exists.

File: safetensors, tensors `ids.{b}` (B, T) int64, `logprobs.{b}` (B, T, k) float32, `index.{b}`
(B, T, k) int32; metadata "minitron" = JSON with the key and what it was computed from. The name
holds the key (a hash of the model fingerprint, the data description, the batch shape, k and the
dtype), so another model or other data never reads a stale cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minitron.errors import MinitronError
from minitron.importance.depth import LOGIT_CHUNK_TOKENS
from minitron.runs import digest

HEADER_KEY = "minitron"
FORMAT_VERSION = 1


@dataclass
class TeacherCache:
    path: Path
    key: str
    ids: list[torch.Tensor]  # (B, T) per batch
    logprobs: list[torch.Tensor]  # (B, T, k) float32
    index: list[torch.Tensor]  # (B, T, k) int64

    @property
    def tokens(self) -> int:
        return sum(ids.numel() for ids in self.ids)

    @property
    def top_k(self) -> int:
        return self.logprobs[0].shape[-1]


def cache_key(fingerprint: str, data: dict[str, Any], top_k: int, dtype: str) -> str:
    payload = {"fingerprint": fingerprint, "data": data, "top_k": top_k, "dtype": dtype, "v": FORMAT_VERSION}
    return digest(payload, 16)


def cache_path(directory: Path, key: str) -> Path:
    return Path(directory) / f"teacher-top-k-{key}.safetensors"


@torch.no_grad()
def teacher_top_k(model, ids: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, k) log-probabilities and int64 token indices of the teacher's top k at every position."""
    from minitron.model.adapters import adapter_for

    adapter = adapter_for(model)
    ctx = adapter.start(model, ids, None)
    hidden = ctx.hidden
    for block in adapter.blocks(model):
        hidden = adapter.run_block(block, hidden, ctx)
    flat = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
    values, indices = [], []
    for start in range(0, flat.shape[0], LOGIT_CHUNK_TOKENS):
        logprobs = torch.log_softmax(adapter.logits(model, flat[start : start + LOGIT_CHUNK_TOKENS]), dim=-1)
        v, i = logprobs.topk(top_k, dim=-1)
        values.append(v)
        indices.append(i)
    shape = (*ids.shape, top_k)
    return torch.cat(values).reshape(shape), torch.cat(indices).reshape(shape)


def build_cache(model, batches: list[torch.Tensor], top_k: int, path: Path, header: dict[str, Any]) -> Path:
    """Run the teacher over `batches` and write the cache atomically."""
    from safetensors.torch import save_file

    from minitron.atomic import atomic_path

    vocab = model.config.vocab_size
    if not 1 <= top_k <= vocab:
        raise MinitronError(f"--top-k must be between 1 and the vocabulary size {vocab}, got {top_k}")
    device = next(model.parameters()).device
    tensors: dict[str, torch.Tensor] = {}
    for b, ids in enumerate(batches):
        logprobs, index = teacher_top_k(model, ids.to(device), top_k)
        tensors[f"ids.{b}"] = ids.to("cpu", torch.int64).contiguous()
        tensors[f"logprobs.{b}"] = logprobs.float().cpu().contiguous()
        tensors[f"index.{b}"] = index.to("cpu", torch.int32).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True, default=str)})
    return path


def load_cache(path: Path) -> TeacherCache:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})[HEADER_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        reason = str(e).splitlines()[0] if str(e) else repr(e)
        raise MinitronError(f"{path}: not a readable teacher cache ({reason})") from None
    n = sum(1 for k in tensors if k.startswith("ids."))
    return TeacherCache(
        path=path,
        key=header["key"],
        ids=[tensors[f"ids.{b}"] for b in range(n)],
        logprobs=[tensors[f"logprobs.{b}"] for b in range(n)],
        index=[tensors[f"index.{b}"].long() for b in range(n)],
    )
