"""`minitron prune`: slice a checkpoint to a target architecture and write a normal HF checkpoint."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError, check_choice
from minitron.model.arch import Architecture
from minitron.prune.target import TargetSpec
from minitron.runs import file_digest

DTYPES = ("keep", "bfloat16", "float16", "float32")
PROVENANCE_FILE = "minitron.json"


@dataclass
class PruneConfig:
    model: str
    out: Path
    scores: Path | None = None
    target: TargetSpec = field(default_factory=TargetSpec)
    candidate: Path | None = None
    rank: int | None = None
    overwrite: bool = False
    dtype: str = "keep"
    max_shard_size: str | int = "2GB"
    command: str = ""  # the command line, recorded in minitron.json

    def __post_init__(self) -> None:
        from minitron.atomic import check_writable
        from minitron.units import parse_bytes

        self.out = Path(self.out)
        check_writable(self.out)
        if self.candidate is not None:
            given = self.target.given_flags()
            if given:
                raise MinitronError(f"--candidate sets the whole target; drop {', '.join(given)}")
            if self.rank is None:
                self.rank = 1
        elif self.rank is not None:
            raise MinitronError("--rank selects a row of --candidate; give --candidate too")
        if self.rank is not None and self.rank < 1:
            raise MinitronError(f"--rank must be 1 or more, got {self.rank}")
        check_choice("--dtype", self.dtype, DTYPES)
        self.max_shard_bytes = parse_bytes(self.max_shard_size, "--max-shard-size")

    @classmethod
    def from_options(cls, *, drop_blocks: str | None = None, **options: Any) -> PruneConfig:
        """From the `prune` command's options by name (one per axis of the table, --drop-blocks as text)."""
        from minitron.model.axes import axes, depth_axis, width_axes
        from minitron.prune.target import parse_block_list

        sizes = {a.name: options.pop(a.option, None) for a in axes()}
        target = TargetSpec(
            drop_blocks=parse_block_list(drop_blocks) if drop_blocks is not None else None, **sizes
        )
        if options.get("candidate") is None and target.empty():
            flags = ", ".join(a.flag for a in (*width_axes(), depth_axis()))
            raise MinitronError(
                f"nothing to prune: give target sizes ({flags} or --drop-blocks) "
                "or a search result (--candidate FILE)"
            )
        return cls(target=target, **options)


@dataclass
class PruneResult:
    out: Path
    source: Architecture
    target: Architecture
    record: dict[str, Any]


def run(config: PruneConfig, console=None) -> PruneResult:
    """Prune `config.model` to the configured target and write the checkpoint to `config.out`."""
    import torch
    from rich.console import Console

    from minitron import __version__
    from minitron.importance.scores import load_scores
    from minitron.model.card import CARD_FILE, licence_of, model_card
    from minitron.model.load import resolve_model
    from minitron.progress import progress_bar
    from minitron.prune.select import select_units
    from minitron.prune.slicing import plan_tensor, pruned_shape
    from minitron.prune.target import candidate_serving, read_candidate, resolve_target
    from minitron.prune.writer import (
        SourceTensors,
        TensorSpec,
        atomic_output_dir,
        check_output_dir,
        copy_tokenizer_files,
        plan_shards,
        write_index,
        write_shard,
    )

    console = console or Console()
    source = resolve_model(config.model)
    src_path = source.require_weights("minitron prune")
    check_output_dir(config.out, src_path, config.overwrite)
    src_arch = source.architecture
    fingerprint = source.fingerprint()

    scores = None
    if config.scores is not None:
        scores = load_scores(config.scores)
        scores.check_matches(src_arch, fingerprint)
    spec = config.target
    if config.candidate is not None:
        spec = read_candidate(config.candidate, config.rank, source)
    target = resolve_target(src_arch, spec, scores)
    sel = select_units(src_arch, target, scores)

    reader = SourceTensors(_weight_files(src_path, source.safetensors_files()))
    plans = {}
    for key in reader.keys():
        new_key, index = plan_tensor(key, len(reader.shape[key]), sel)
        if new_key is None:
            continue
        out_dtype = (
            reader.dtype[key]
            if config.dtype == "keep" or not reader.dtype[key].is_floating_point
            else getattr(torch, config.dtype)
        )
        shape = pruned_shape(index, reader.shape[key])
        plans[new_key] = (key, index, TensorSpec(new_key, out_dtype, shape))

    specs = sorted((p[2] for p in plans.values()), key=lambda s: _natural_key(s.name))
    n_written = sum(_numel(s.shape) for s in specs)
    expected = target.arch.n_params + target.arch.family.buffer_elements(target.arch)
    if n_written != expected:
        raise MinitronError(
            f"{src_path}: the checkpoint's tensors give {n_written:,} parameters after pruning, the target "
            f"architecture has {expected:,} (does the config describe these weights?)"
        )
    shards = plan_shards(specs, config.max_shard_bytes)

    def produce(s: TensorSpec) -> torch.Tensor:
        key, index, _ = plans[s.name]
        return reader.read(key, index, s.dtype)

    record = _provenance(config, source, fingerprint, scores, target, sel, shards, __version__)
    record["serving"] = (
        candidate_serving(config.candidate, config.rank, target.arch) if config.candidate else None
    )
    out_arch = target.arch
    if config.dtype != "keep":
        out_arch = dataclasses.replace(out_arch, extra={**out_arch.extra, "dtype": config.dtype})

    with atomic_output_dir(config.out) as tmp:
        total = sum(s.nbytes for s in specs)
        with progress_bar("pruning", total, True, unit="bytes", console=console, transient=True) as advance:
            for file, group in shards:
                write_shard(tmp / file, group, produce, on_tensor=lambda s: advance(s.nbytes))
        write_index(tmp, shards)
        (tmp / "config.json").write_text(out_arch.to_config_json())
        record["tokenizer_files"] = copy_tokenizer_files(src_path, tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(model_card(
            title=config.out.name, stage="pruned", base_model=source.name, before=src_arch.summary(),
            after=target.arch.summary(), commands=[config.command] if config.command else [],
            serving=record["serving"], licence=licence_of(src_path),
        ))  # fmt: skip

    result = PruneResult(out=config.out, source=src_arch, target=target.arch, record=record)
    console.print(summary_table(result))
    console.print(
        f"wrote {config.out} ({len(shards)} shard{'s' if len(shards) > 1 else ''}, {PROVENANCE_FILE})"
    )
    return result


def _weight_files(path: Path, files: list[Path]) -> list[Path]:
    """The shards the index names when there is one (other *.safetensors, e.g. a scores file, are not weights)."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return files
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise MinitronError(f"{index}: not a safetensors index (needs a 'weight_map')") from None
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise MinitronError(f"{index} names missing shards: {', '.join(missing)}")
    return [path / n for n in names]


def summary_table(result: PruneResult):
    from rich.table import Table

    from minitron.model.axes import width_names

    table = Table(title="prune: source vs target")
    for col in ("", "source", "target", "kept"):
        table.add_column(col, justify="left" if not col else "right")
    src, tgt = result.source.summary(), result.target.summary()
    rows = (
        "params",
        "active_params",
        "blocks",
        "mamba_blocks",
        "mlp_blocks",
        "attention_blocks",
        "moe_blocks",
    )
    for key in (*rows, *width_names()):
        a, b = src.get(key, 0), tgt.get(key, 0)  # MoE rows only for MoE models
        if not a and not b:  # a row the family does not have (a dense model's Mamba rows)
            continue
        table.add_row(key, f"{a:,}", f"{b:,}", f"{b / a:.1%}" if a else "-")
    return table


def _provenance(config, source, fingerprint, scores, target, sel, shards, version) -> dict[str, Any]:
    scores_info = None
    if config.scores is not None:
        scores_info = {
            "path": str(Path(config.scores).resolve()),
            "sha256": file_digest(config.scores, 16),
            "header": scores.header,
        }
    return {
        "minitron_version": version,
        "command": config.command,
        "source": {
            "model": source.name,
            "path": str(source.path.resolve()),
            "fingerprint": fingerprint,
            "architecture": source.architecture.summary(),
        },
        "scores": scores_info,
        "candidate": (
            {"path": str(Path(config.candidate).resolve()), "rank": config.rank} if config.candidate else None
        ),
        "target": target.arch.summary(),
        "dropped_blocks": list(target.dropped_blocks),
        "kept": sel.summary(),
        "dtype": config.dtype,
        "shards": [file for file, _ in shards],
    }


def _natural_key(name: str) -> list[object]:
    """'model.layers.10.x' after 'model.layers.9.x'; embeddings before layers, norm_f and lm_head after."""
    rank = 0 if "embed" in name else 2 if "layers." not in name else 1
    return [rank, *(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
