"""The scores file: importance tensors in safetensors, with a JSON header saying what they describe.

Tensor keys (block indices are positions in the scored model's block pattern):

    hidden                  (hidden,)                  embedding-channel scores
    ffn.{i}                 (ffn,)                     neuron scores of MLP block i
    attn_heads.{i}          (attn_heads,)              head scores of attention block i
    mamba.{i}               (mamba_heads, head_dim)    aggregated |x| activations of Mamba block i;
                                                       head and head-channel rankings are derived
                                                       from it for a given target (nested, group-aware)
    experts.{i}             (experts,)                 routed-expert scores of MoE block i (header
                                                       settings.expert_score: reap, frequency, norm)
    expert_ffn.{i}          (experts, expert_ffn)      neuron scores of each routed expert of block i
    shared_ffn.{i}          (shared_ffn,)              neuron scores of block i's shared expert
    depth.scores            (n_blocks,)                one score per block, higher = more important
    depth.order             (n_blocks,)                block indices, least important first (iterative
                                                       removal order, or ascending score when one-shot)

Header (safetensors metadata key "minitron", a JSON object): model, fingerprint, architecture
(`Architecture.summary()`), data, samples, seq_len, settings (estimator options), version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minitron.atomic import atomic_path
from minitron.errors import MinitronError, input_file
from minitron.model.arch import Architecture

HEADER_KEY = "minitron"


@dataclass
class Scores:
    tensors: dict[str, torch.Tensor]
    header: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise MinitronError(
                f"scores file has no '{key}' scores; rerun `minitron score` with that estimator"
            )
        return self.tensors[key]

    def has_width(self) -> bool:
        return "hidden" in self.tensors

    def has_depth(self) -> bool:
        return "depth.scores" in self.tensors

    def check_matches(self, arch: Architecture, fingerprint: str | None = None) -> None:
        """Fail clearly when these scores were computed for another model or architecture."""
        scored = self.header.get("architecture", {})
        if scored.get("pattern") != arch.pattern or scored.get("hidden") != arch.hidden:
            raise MinitronError(
                f"scores were computed for a different architecture "
                f"({scored.get('blocks')} blocks, hidden {scored.get('hidden')}) than this model "
                f"({arch.n_blocks} blocks, hidden {arch.hidden})"
            )
        from minitron.model.axes import width_names

        here = arch.summary()  # a model without MoE blocks lists no MoE axes, nor do its scores
        for axis in width_names():
            if scored.get(axis) != here.get(axis):
                raise MinitronError(
                    f"scores were computed for {axis}={scored.get(axis)}, this model has {here.get(axis)}"
                )
        if fingerprint is not None and self.header.get("fingerprint") not in (None, fingerprint):
            raise MinitronError(
                f"scores were computed for other weights (fingerprint {self.header.get('fingerprint')}, "
                f"this model {fingerprint}; scored model: {self.header.get('model')})"
            )


def save_scores(scores: Scores, path: str | Path) -> Path:
    """Write atomically: a temp file in the same directory, then rename over `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else torch.int64).contiguous()
        for k, v in scores.tensors.items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(scores.header, sort_keys=True)})
    return path


def load_scores(path: str | Path) -> Scores:
    from safetensors import safe_open

    path = input_file(path, "scores file", "the .safetensors of `minitron score`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise MinitronError(
            f"{path}: not a readable scores file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    if HEADER_KEY not in metadata:
        raise MinitronError(f"{path}: not a minitron scores file (no '{HEADER_KEY}' header)")
    return Scores(tensors=tensors, header=json.loads(metadata[HEADER_KEY]))
