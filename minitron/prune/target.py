"""The target of a prune: which blocks stay and how wide every axis is.

A target comes from explicit sizes (`--hidden 4480 --ffn 15680 ... --layers 56` or `--drop-blocks`)
or from one row of a search result. Axes left unset keep the source size.

Candidate file (written by `minitron search`, read here), JSON:

    {"candidates": [
        {"rank": 1,                      # 1 = best; the row `--rank` selects
         "drop_blocks": [3, 17, ...],    # block indices in the SOURCE pattern, 0-based
         "hidden": 4480, "ffn": 15680, "attn_heads": 40, "mamba_heads": 128, "mamba_head_dim": 80,
         "experts": 96, "expert_ffn": 1536, "shared_ffn": 3072,     # MoE models only
         ...},                           # other fields (scores, memory, ...) are ignored here
        ...],
     ...}                                # other top-level fields are ignored here

A size missing from a candidate keeps the source size; a missing `drop_blocks` keeps every block.
A candidate searched without a depth order has `"drop_blocks": null` and `"drop_counts"` (blocks of
each type to remove, which ones unknown): it is refused here rather than pruned without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.importance.scores import Scores
from minitron.model.arch import PRUNABLE_AXES, Architecture

# Flag names of the width axes, for error messages.
AXIS_FLAGS = {
    "hidden": "--hidden",
    "ffn": "--ffn",
    "attn_heads": "--attn-heads",
    "mamba_heads": "--mamba-heads",
    "mamba_head_dim": "--mamba-head-dim",
    # mixture of experts
    "experts": "--experts",
    "expert_ffn": "--expert-ffn",
    "shared_ffn": "--shared-ffn",
}


@dataclass(frozen=True)
class TargetSpec:
    """What the user asked for; `None` keeps the source value."""

    hidden: int | None = None
    ffn: int | None = None
    attn_heads: int | None = None
    mamba_heads: int | None = None
    mamba_head_dim: int | None = None
    experts: int | None = None  # routed experts kept in every MoE block
    expert_ffn: int | None = None
    shared_ffn: int | None = None
    layers: int | None = None
    drop_blocks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for axis, flag in AXIS_FLAGS.items():
            value = getattr(self, axis)
            if value is not None and value <= 0:
                raise MinitronError(f"{flag} must be a positive integer, got {value}")
        if self.layers is not None and self.layers <= 0:
            raise MinitronError(f"--layers must be a positive integer, got {self.layers}")
        if self.layers is not None and self.drop_blocks is not None:
            raise MinitronError("give either --layers or --drop-blocks, not both")

    def sizes(self) -> dict[str, int]:
        return {axis: getattr(self, axis) for axis in AXIS_FLAGS if getattr(self, axis) is not None}


@dataclass(frozen=True)
class Target:
    """A resolved target: its architecture and the source blocks it keeps (in order)."""

    arch: Architecture
    kept_blocks: tuple[int, ...]
    dropped_blocks: tuple[int, ...]


def parse_block_list(text: str) -> tuple[int, ...]:
    """'3,17, 20' -> (3, 17, 20); the error names --drop-blocks."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise MinitronError(f"--drop-blocks takes comma-separated block indices, got {text!r}") from None
    if not values:
        raise MinitronError("--drop-blocks is empty; give comma-separated block indices like 3,17")
    return values


def candidate_rows(path: str | Path) -> list[dict[str, Any]]:
    """The candidate rows of a search candidates file (one clear error for a missing or malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise MinitronError(f"{path}: no such candidates file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MinitronError(f"{path}: not valid JSON ({e})") from None
    rows = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MinitronError(f"{path}: not a candidates file (needs a 'candidates' list of objects)")
    return rows


def read_candidate(path: str | Path, rank: int) -> TargetSpec:
    """The TargetSpec of the candidate with `rank` in a search candidates file (format: module doc)."""
    path = Path(path)
    rows = candidate_rows(path)
    matching = [r for r in rows if r.get("rank") == rank]
    if not matching:
        ranks = sorted(r["rank"] for r in rows if isinstance(r.get("rank"), int))
        raise MinitronError(f"{path}: no candidate with rank {rank}; ranks present: {ranks or 'none'}")
    row = matching[0]
    counts = row.get("drop_counts")
    if row.get("drop_blocks") is None and isinstance(counts, dict) and any(counts.values()):
        removed = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        raise MinitronError(
            f"{path}: candidate rank {rank} removes {removed} blocks but the search had no depth order to "
            "say which; rerun `minitron search` with --scores (depth scores) or --drop-blocks"
        )
    return TargetSpec(
        **{axis: _int_field(row, axis, path) for axis in AXIS_FLAGS},
        drop_blocks=_drop_blocks_field(row, path),
    )


def _int_field(row: dict[str, Any], name: str, path: Path) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MinitronError(
            f"{path}: candidate rank {row['rank']}: '{name}' must be an integer, got {value!r}"
        )
    return value


def _drop_blocks_field(row: dict[str, Any], path: Path) -> tuple[int, ...] | None:
    value = row.get("drop_blocks")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise MinitronError(f"{path}: candidate rank {row['rank']}: 'drop_blocks' must be a list of integers")
    return tuple(value)


def resolve_target(source: Architecture, spec: TargetSpec, scores: Scores | None) -> Target:
    """The target architecture of `spec` applied to `source`; one clear error when it is not reachable."""
    absent = sorted(set(spec.sizes()) & source.absent_axes())
    if absent:
        flags = ", ".join(AXIS_FLAGS[a] for a in absent)
        raise MinitronError(f"{flags}: {source.family.name} models have no such axis")
    drop = _blocks_to_drop(source, spec, scores)
    if len(set(drop)) != len(drop):
        raise MinitronError(f"--drop-blocks lists a block twice: {sorted(drop)}")
    arch = source.drop_blocks(drop).with_sizes(**spec.sizes())
    problems = arch.shrinks(source)
    if problems:
        raise MinitronError("target is not a pruning of the source: " + "; ".join(problems))
    kept = tuple(i for i in range(source.n_blocks) if i not in set(drop))
    return Target(arch=arch, kept_blocks=kept, dropped_blocks=tuple(sorted(drop)))


def _blocks_to_drop(source: Architecture, spec: TargetSpec, scores: Scores | None) -> tuple[int, ...]:
    if spec.drop_blocks is not None:
        return spec.drop_blocks
    if spec.layers is None or spec.layers == source.n_blocks:
        return ()
    if spec.layers > source.n_blocks:
        raise MinitronError(
            f"--layers {spec.layers} > source blocks {source.n_blocks}; pruning only removes blocks"
        )
    if scores is None:
        raise MinitronError("--layers needs --scores (a scores file with depth scores) to choose the blocks")
    # depth.order lists blocks least important first: drop its head.
    order = [int(i) for i in scores.get("depth.order").tolist()]
    return tuple(order[: source.n_blocks - spec.layers])


def width_axes_changed(source: Architecture, target: Architecture) -> list[str]:
    """The width axes the target narrows (these need importance scores)."""
    return [axis for axis in sorted(PRUNABLE_AXES) if getattr(target, axis) != getattr(source, axis)]
