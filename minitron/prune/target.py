"""The target of a prune: which blocks stay and how wide every axis is.

A target comes from explicit sizes (`--hidden 4480 --ffn 15680 ... --layers 56` or `--drop-blocks`)
or from one row of a search result. Axes left unset keep the source size.

Candidate file (written by `minitron search`, read here), JSON:

    {"candidates": [
        {"rank": 1,                      # 1 = best; the row `--rank` selects
         "drop_blocks": [3, 17, ...],    # block indices in the SOURCE pattern, 0-based
         "hidden": 4480, "ffn": 15680, ...,  # one size per width axis of minitron.model.axes
         "memory": {"total_bytes": ..., ...},  # serving memory at the searched spec (compare, report)
         ...},                           # other fields (scores, ...) are ignored here
        ...],
     "serving": {"context_tokens": 131072, "batch": 1, "budget": {...}, ...},  # minitron.memory.ServingSpec
     ...}                                # other top-level fields are ignored here

A size missing from a candidate keeps the source size; a missing `drop_blocks` keeps every block.
A candidate searched without a depth order has `"drop_blocks": null` and `"drop_counts"` (blocks of
each type to remove, which ones unknown): it is refused here rather than pruned without them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError, input_file, read_json
from minitron.importance.scores import Scores
from minitron.model.arch import Architecture
from minitron.model.axes import axes, axis, axis_names, depth_axis, width_names


class TargetSpec:
    """What the user asked for: a size per axis of the table (`None` keeps the source value), and/or
    the source blocks to drop. `TargetSpec(hidden=4480, layers=56)`; sizes read as `spec.hidden`."""

    __slots__ = ("_sizes", "drop_blocks")

    def __init__(self, drop_blocks: tuple[int, ...] | None = None, **sizes: int | None) -> None:
        names = axis_names()
        unknown = sorted(set(sizes) - set(names))
        if unknown:
            raise MinitronError(f"unknown axis {unknown[0]!r}; axes: {', '.join(names)}")
        for name, value in sizes.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise MinitronError(f"{axis(name).flag} must be a positive integer, got {value}")
        object.__setattr__(self, "_sizes", {k: v for k, v in sizes.items() if v is not None})
        object.__setattr__(self, "drop_blocks", tuple(drop_blocks) if drop_blocks is not None else None)
        if self.layers is not None and self.drop_blocks is not None:
            raise MinitronError(f"give either {depth_axis().flag} or --drop-blocks, not both")

    def __getattr__(self, name: str) -> int | None:
        if name in axis_names():
            return self._sizes.get(name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TargetSpec is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TargetSpec) and (self._sizes, self.drop_blocks) == (
            other._sizes,
            other.drop_blocks,
        )

    def __hash__(self) -> int:
        return hash((tuple(sorted(self._sizes.items())), self.drop_blocks))

    def __repr__(self) -> str:
        fields = [f"{k}={v}" for k, v in self._sizes.items()] + [f"drop_blocks={self.drop_blocks}"] * (
            self.drop_blocks is not None
        )
        return f"TargetSpec({', '.join(fields)})"

    def __reduce__(self):  # copy and pickle through __init__ (the attributes are read-only)
        return (functools.partial(TargetSpec, **self._sizes), (self.drop_blocks,))

    def sizes(self) -> dict[str, int]:
        """The width sizes asked for (depth aside)."""
        return {name: self._sizes[name] for name in width_names() if name in self._sizes}

    def given_flags(self) -> list[str]:
        """The flags this spec sets (for "--candidate sets the whole target; drop ...")."""
        flags = [a.flag for a in axes() if a.name in self._sizes]
        return flags + ["--drop-blocks"] * (self.drop_blocks is not None)

    def empty(self) -> bool:
        return not self._sizes and self.drop_blocks is None


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


def candidates_document(path: str | Path, model=None) -> dict[str, Any]:
    """A search candidates file (one clear error for a missing or malformed file).

    With `model` (the ModelSource about to be pruned), a file searched on another model is refused:
    its `source` names another architecture, or other weights (a config-only preset's candidates fit
    any checkpoint of its architecture).
    """
    from minitron.search.run import FORMAT

    path = input_file(path, "candidates file", "candidates.json of `minitron search`")
    data = read_json(path)
    rows = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MinitronError(f"{path}: not a candidates file (needs a 'candidates' list of objects)")
    if "format" in data and data["format"] != FORMAT:
        raise MinitronError(
            f"{path}: format {data['format']!r} is not {FORMAT!r} (a `minitron search` result)"
        )
    if model is not None:
        _check_searched_on(path, data.get("source"), model)
    return data


def candidate_rows(path: str | Path, model=None) -> list[dict[str, Any]]:
    """The candidate rows of a search candidates file; `model` as in candidates_document."""
    return candidates_document(path, model)["candidates"]


def searched_memory_bytes(document: dict[str, Any], row: dict[str, Any], arch: Architecture) -> int | None:
    """The serving memory of a candidate as its search measured it: the row's figure, else the
    architecture sized with the file's serving spec; None when the file gives neither (never a default)."""
    memory = row.get("memory")
    if isinstance(memory, dict) and isinstance(memory.get("total_bytes"), int):
        return memory["total_bytes"]
    if isinstance(document.get("serving"), dict):
        from minitron.memory import ServingSpec

        return ServingSpec.from_dict(document["serving"]).memory(arch).total_bytes
    return None


def candidate_serving(path: str | Path, rank: int, arch: Architecture) -> dict[str, Any] | None:
    """The serving memory of candidate `rank` as its search measured it (`searched_memory_bytes`), with
    the serving settings it was measured at (context, batch, dtypes); None when the file gives neither."""
    document = json.loads(Path(path).read_text())
    row = next((r for r in candidate_rows(path) if r.get("rank") == rank), {})
    total = searched_memory_bytes(document, row, arch)
    if total is None:
        return None
    serving = document.get("serving") if isinstance(document.get("serving"), dict) else {}
    memory = row.get("memory") if isinstance(row.get("memory"), dict) else {}
    return {**{k: v for k, v in serving.items() if k != "budget"}, **memory, "total_bytes": total}


def _check_searched_on(path: Path, searched: Any, model) -> None:
    if not isinstance(searched, dict):
        return  # a hand-written file: nothing says which model it was searched on
    name = searched.get("model", "another model")
    summary = searched.get("architecture")
    if isinstance(summary, dict) and summary.get("pattern") not in (None, model.architecture.pattern):
        raise MinitronError(
            f"{path}: searched on {name} ({summary.get('blocks')} blocks), not on {model.name} "
            f"({model.architecture.n_blocks} blocks); search {model.name} first"
        )
    if isinstance(summary, dict) and summary != model.architecture.summary():
        raise MinitronError(f"{path}: searched on {name}, whose sizes differ from {model.name}'s")
    saved = str(searched.get("fingerprint", ""))
    if saved and not saved.startswith("config:") and model.has_weights and saved != model.fingerprint():
        raise MinitronError(
            f"{path}: searched on other weights ({name}, fingerprint {saved}) than {model.name} "
            f"({model.fingerprint()}); search this checkpoint first"
        )


def read_candidate(path: str | Path, rank: int, model=None) -> TargetSpec:
    """The TargetSpec of the candidate with `rank` in a search candidates file (format: module doc);
    `model` as in candidate_rows."""
    path = Path(path)
    rows = candidate_rows(path, model)
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
        **{name: _int_field(row, name, path) for name in width_names()},
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
        flags = ", ".join(axis(a).flag for a in absent)
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
    return [name for name in sorted(width_names()) if getattr(target, name) != getattr(source, name)]
