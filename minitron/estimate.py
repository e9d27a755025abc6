"""`minitron estimate`: parameters and serving memory of one model against a budget (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.memory import GPU, Budget, MemoryEstimate, ServingSpec, get_engine
from minitron.model.arch import ATTENTION, BLOCK_NAMES, MAMBA, MOE, Architecture
from minitron.units import format_bytes, format_tokens


@dataclass(frozen=True)
class EstimateConfig:
    model: str
    serving: ServingSpec = ServingSpec()
    as_json: bool = False  # print JSON instead of tables
    out: Path | None = None  # also write the JSON here

    def __post_init__(self) -> None:
        if self.out is not None:
            out = Path(self.out)
            if out.is_dir():
                raise MinitronError(f"--out: {out} is a directory; give a file name")
            object.__setattr__(self, "out", out)

    @classmethod
    def from_options(
        cls, model: str, as_json: bool = False, out: str | None = None, **serving: Any
    ) -> EstimateConfig:
        """From the `estimate` command's options by name; every error names its flag."""
        return cls(model=model, serving=ServingSpec.from_options(**serving), as_json=as_json, out=out)


@dataclass(frozen=True)
class EstimateReport:
    model: str
    architecture: Architecture
    memory: MemoryEstimate
    budget: Budget | None
    gpu: GPU | None

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None else self.memory.total_bytes <= self.budget.usable_bytes

    @property
    def margin_bytes(self) -> int | None:
        """Usable budget minus the estimate (negative: over budget)."""
        return None if self.budget is None else self.budget.usable_bytes - self.memory.total_bytes

    @property
    def decode_tokens_per_s_bound(self) -> float | None:
        """Bandwidth roofline at full context: every decode step reads the weights and every cache once."""
        if self.gpu is None:
            return None
        return self.memory.batch * self.gpu.bandwidth_bytes_per_s / self.memory.total_bytes

    def to_dict(self) -> dict[str, Any]:
        mem = self.memory
        budget = None
        if self.budget is not None:
            budget = {**asdict(self.budget), "usable_bytes": self.budget.usable_bytes}
        return {
            "model": self.model,
            "engine": mem.engine,
            "context_tokens": mem.context_tokens,
            "batch": mem.batch,
            "dtypes": {
                "weights": mem.weight_dtype,
                "kv_cache": mem.kv_dtype,
                "ssm_state": mem.ssm_dtype,
                "conv_state": mem.conv_dtype,
            },
            "architecture": self.architecture.summary(),
            "params": {
                "total": mem.params,
                "active": self.architecture.n_active_params,  # the total for a model without MoE blocks
                "by_part": self.architecture.params_by_part(),
                "active_by_part": self.architecture.active_params_by_part(),
            },
            "bytes": {
                "weights": mem.weights_bytes,
                "kv_cache": mem.kv_cache_bytes,
                "ssm_state": mem.ssm_state_bytes,
                "conv_state": mem.conv_state_bytes,
                "total": mem.total_bytes,
            },
            "budget": budget,
            "gpu": asdict(self.gpu) if self.gpu is not None else None,
            "fits": self.fits,
            "margin_bytes": self.margin_bytes,
            "decode_tokens_per_s_bound": self.decode_tokens_per_s_bound,
        }


def run_estimate(config: EstimateConfig) -> EstimateReport:
    """Resolve the model (a directory or a built-in name; its config is enough) and size it."""
    from minitron.model.load import resolve_model

    source = resolve_model(config.model)
    arch = source.architecture
    serving = config.serving
    return EstimateReport(
        model=source.name, architecture=arch, memory=serving.memory(arch), budget=serving.budget,
        gpu=serving.gpu_preset,
    )  # fmt: skip


def run(config: EstimateConfig, console=None) -> EstimateReport:
    """`minitron estimate`: size the model, write --out, print JSON (--json) or the tables."""
    report = run_estimate(config)
    print_report(report.to_dict(), lambda: estimate_tables(report), config.out, config.as_json, console)
    return report


def print_report(data: dict[str, Any], tables, out: str | Path | None, as_json: bool, console=None) -> None:
    """Write `data` to --out, then print it as JSON (--json) or the rich tables `tables()` builds."""
    from minitron.atomic import json_text

    if out is not None:
        save_json(data, out)
    if as_json:
        print(json_text(data))
        return
    from rich.console import Console

    console = console or Console()
    for table in tables():
        console.print(table)


def estimate_tables(report: EstimateReport) -> list:
    """Rich tables: parameters by block type, bytes by term, then the budget verdict."""
    from rich.table import Table

    arch, mem = report.architecture, report.memory
    params = Table(title=f"{report.model}: parameters", title_justify="left")
    params.add_column("part")
    params.add_column("blocks", justify="right")
    params.add_column("parameters", justify="right")
    params.add_column("share", justify="right")
    moe = arch.has_part(MOE)
    if moe:  # what one token passes through: the top-k routed experts of every MoE block
        params.add_column("active", justify="right")
    kinds = {name: kind for kind, name in BLOCK_NAMES.items()}
    active = arch.active_params_by_part()
    for part, count in arch.params_by_part().items():
        blocks = str(arch.count(kinds[part])) if part in kinds else ""
        row = [part, blocks, f"{count:,}", f"{count / mem.params:.1%}"]
        params.add_row(*row, *([f"{active[part]:,}"] if moe else []))
    params.add_section()
    total = ["total", str(arch.n_blocks), f"{mem.params:,}", "100%"]
    params.add_row(*total, *([f"{arch.n_active_params:,}"] if moe else []), style="bold")

    title = f"memory at {format_tokens(mem.context_tokens)} context, batch {mem.batch}, {mem.engine} engine"
    memory = Table(title=title, title_justify="left")
    memory.add_column("term")
    memory.add_column("dtype")
    memory.add_column("shape")
    memory.add_column("bytes", justify="right")
    memory.add_column("size", justify="right")
    n_attn, n_mamba, b = arch.count_part(ATTENTION), arch.count_part(MAMBA), mem.batch
    columns = get_engine(mem.engine).conv_columns(arch.conv_kernel)
    rows = [
        ("weights", mem.weight_dtype, f"{mem.params:,}", mem.weights_bytes),
        (
            "KV cache",
            mem.kv_dtype,
            f"{n_attn}x2x({b},{arch.kv_heads},{mem.context_tokens},{arch.head_dim})",
            mem.kv_cache_bytes,
        ),
        (
            "SSM state",
            mem.ssm_dtype,
            f"{n_mamba}x({b},{arch.mamba_heads},{arch.mamba_head_dim},{arch.ssm_state})",
            mem.ssm_state_bytes,
        ),
        (
            "conv state",
            mem.conv_dtype,
            f"{n_mamba}x({b},{arch.mamba_conv_dim},{columns})",
            mem.conv_state_bytes,
        ),
    ]
    if not n_mamba:
        rows = rows[:2]  # a model without Mamba blocks has no SSM or conv state
    for term, dtype, shape, size in rows:
        memory.add_row(term, dtype, shape, f"{size:,}", format_bytes(size))
    memory.add_section()
    memory.add_row("total", "", "", f"{mem.total_bytes:,}", format_bytes(mem.total_bytes), style="bold")

    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    if report.budget is None:
        summary.add_row("budget", "none given (--budget or --gpu)")
    else:
        budget, margin = report.budget, report.margin_bytes
        summary.add_row("budget", f"{budget.describe()} ({budget.source})")
        if report.fits:
            verdict = f"[green]fits[/]: {format_bytes(margin)} spare"
        else:
            verdict = f"[red]does not fit[/]: {format_bytes(-margin)} over"
        summary.add_row("verdict", verdict)
    if report.gpu is not None:
        summary.add_row(
            "decode",
            f"at most {report.decode_tokens_per_s_bound:,.1f} tokens/s on {report.gpu.name} "
            f"({report.gpu.bandwidth_bytes_per_s / 1e9:,.0f} GB/s; every step reads weights and caches)",
        )
    return [params, memory, summary]


def save_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a temp file in the same directory, then rename over `path`."""
    from minitron.atomic import check_writable, write_json

    path = check_writable(path, file=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    return write_json(path, data)
