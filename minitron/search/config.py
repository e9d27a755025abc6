"""The settings of `minitron search` (SearchConfig), built from its options by name and validated."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError, check_choice
from minitron.memory import DEFAULT_GPU, ServingSpec, get_gpu
from minitron.search.objective import OBJECTIVES


def parse_params(text: str | None, flag: str, source_params: int) -> int | None:
    """'8.9B', '7e9', '500M', '72%' (of the source) or a plain count -> parameters."""
    if text is None:
        return None
    raw = str(text).strip()
    if raw.endswith("%"):
        from minitron.units import parse_fraction

        return int(parse_fraction(raw, flag) * source_params) if raw != "100%" else source_params
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMbB]?)", raw)
    if not match:
        raise MinitronError(f"{flag}: cannot read {text!r}; write 8.9B, 500M, 7e9, 72% or a count")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[match[2].lower()]
    number = float(match[1]) * scale
    if not math.isfinite(number):
        raise MinitronError(f"{flag}: {text!r} is too large to be a parameter count such as 8.9B or 500M")
    value = int(number)
    if value < 1:
        raise MinitronError(f"{flag}: must be positive, got {text!r}")
    return value


@dataclass
class SearchConfig:
    model: str
    out: Path = Path("runs/search")
    scores: Path | None = None
    axes: dict[str, str | None] = field(default_factory=dict)
    drop_blocks: tuple[int, ...] | None = None
    granularity: int = 64
    max_prune: str | None = None
    serving: ServingSpec = field(default_factory=ServingSpec)
    min_params: str | None = None
    max_params: str | None = None
    min_active_params: str | None = None  # MoE: parameters one token passes through
    max_active_params: str | None = None
    evaluate: bool = True
    objective: str = "kl"
    throughput_objective: bool = False
    trials: int = 100
    timeout_s: float | None = None
    workers: int = 1
    storage: str | None = None
    seed: int = 0
    seed_trials: int = 10
    top: int = 100
    data: str = "builtin"
    text_field: str = "text"
    glob: str | None = None
    eval_samples: int = 16
    seq_len: int = 256
    batch_size: int = 4
    top_k: int = 64
    device: str = "cpu"
    eval_dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        from minitron.atomic import check_writable
        from minitron.model.axes import axis_names

        self.out = Path(self.out)
        check_writable(self.out)
        unknown = set(self.axes) - set(axis_names())
        if unknown:
            raise MinitronError(f"unknown axis {sorted(unknown)[0]!r}; axes: {', '.join(axis_names())}")
        for flag, value, least in (
            ("--trials", self.trials, 1),
            ("--workers", self.workers, 1),
            ("--eval-samples", self.eval_samples, 1),
            ("--seq-len", self.seq_len, 2),
            ("--batch-size", self.batch_size, 1),
            ("--top-k", self.top_k, 1),
            ("--top", self.top, 1),
            ("--seed-trials", self.seed_trials, 0),
        ):
            if value < least:
                raise MinitronError(f"{flag} must be at least {least}, got {value}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise MinitronError(f"--timeout must be positive seconds, got {self.timeout_s}")
        check_choice("--objective", self.objective, OBJECTIVES)
        if self.eval_dtype not in ("float32", "bfloat16", "float16"):
            raise MinitronError(f"--eval-dtype must be float32, bfloat16 or float16, got {self.eval_dtype!r}")
        self.serving.usable_bytes("search")  # a budget is required
        self.gpu_name = self.serving.gpu or DEFAULT_GPU
        self.gpu_ = get_gpu(self.gpu_name)
        from minitron.search.space import parse_max_prune

        self.max_prune_ = parse_max_prune(self.max_prune)

    @classmethod
    def from_options(cls, **options: Any) -> SearchConfig:
        """From the `search` command's options by name: one per axis of the table, the serving options
        (ServingSpec.from_options), --drop-blocks as text, --no-eval, --throughput and --timeout."""
        from minitron.model.axes import axes
        from minitron.prune.target import parse_block_list

        serving = ServingSpec.from_options(
            **{k: options.pop(k) for k in ServingSpec.option_names() if k in options}
        )
        axis_values = {a.name: options.pop(a.option, None) for a in axes()}
        drop_blocks = options.pop("drop_blocks", None)
        renamed = {"no_eval": "evaluate", "throughput": "throughput_objective", "timeout": "timeout_s"}
        for old, new in renamed.items():
            if old in options:
                options[new] = options.pop(old)
        if "evaluate" in options:
            options["evaluate"] = not options["evaluate"]
        return cls(
            serving=serving,
            axes={k: v for k, v in axis_values.items() if v is not None},
            drop_blocks=parse_block_list(drop_blocks) if drop_blocks is not None else None,
            **options,
        )
