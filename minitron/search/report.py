"""What a search writes: candidates.json (what `prune --candidate` reads), candidates.csv, pareto.png,
and the rich table.

Every candidate row holds its sizes, its dropped blocks (source indices; null when the search had no
depth order, with `drop_counts` saying how many of each type go), parameters, memory terms in
bytes (recomputed from the sizes), spare bytes under the budget, estimated decode tokens/s and the
objective (null without evaluation) or the weight-free proxy.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

from minitron.atomic import write_json, write_png, write_text
from minitron.memory import GPU
from minitron.model.arch import ATTENTION, BLOCK_NAMES, MAMBA, MLP, MOE
from minitron.model.axes import depth_axis, width_axes, width_names
from minitron.search.frontier import Constraint, Point
from minitron.search.space import SearchSpace
from minitron.search.throughput import decode_tokens_per_s
from minitron.units import byte_unit, format_bytes

MEMORY_COLUMNS = ("weights_bytes", "kv_cache_bytes", "ssm_state_bytes", "conv_state_bytes", "total_bytes")


def csv_columns() -> tuple[str, ...]:
    """candidates.csv: one column per axis of the table, the memory terms, the scores."""
    return ("rank", depth_axis().name, "mamba_blocks", "mlp_blocks", "attention_blocks", "moe_blocks",
            *width_names(), "params", "active_params", *MEMORY_COLUMNS, "spare_bytes", "decode_tokens_per_s",
            "objective", "proxy", "drop_blocks", "trial")  # fmt: skip


def candidate_row(
    point: Point,
    space: SearchSpace,
    constraint: Constraint,
    gpu: GPU,
    objective: float | None,
    proxy: float | None,
    trial: int | None = None,
) -> dict[str, Any]:
    """One candidate, every figure recomputed from its sizes."""
    arch = space.arch(point.depth, **point.sizes())
    mem = constraint.memory(arch)
    return {
        "rank": None,
        "drop_blocks": list(point.depth.dropped) if point.depth.dropped is not None else None,
        "drop_counts": {
            BLOCK_NAMES[k]: c for k, c in zip(space.source.block_kinds, point.depth.counts, strict=True)
        },
        depth_axis().name: arch.n_blocks,
        "mamba_blocks": arch.count_part(MAMBA),
        "mlp_blocks": arch.count_part(MLP),
        "attention_blocks": arch.count_part(ATTENTION),
        "moe_blocks": arch.count_part(MOE),
        **space.pruned_sizes(point.sizes()),
        "params": arch.n_params,
        "active_params": arch.n_active_params,  # the total for a model without MoE blocks
        "memory": {key: getattr(mem, key) for key in MEMORY_COLUMNS},
        "spare_bytes": constraint.usable_bytes - mem.total_bytes,
        "decode_tokens_per_s": decode_tokens_per_s(mem, gpu),
        "objective": objective,
        "proxy": proxy,
        "trial": trial,
    }


def rank_rows(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Rows sorted best first by `by` ('objective': lower is better; 'proxy': higher is better)."""
    if by == "objective":
        rows = sorted(rows, key=lambda r: (r["objective"], -r["params"]))
    else:
        rows = sorted(rows, key=lambda r: (-r["proxy"], -r["params"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def write_outputs(out: Path, document: dict[str, Any], usable_bytes: int) -> list[Path]:
    rows = document["candidates"]
    written = [write_json(out / "candidates.json", document)]
    buffer = io.StringIO()
    columns = csv_columns()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: row.get(k) for k in columns}
        flat.update(row["memory"])
        flat["drop_blocks"] = " ".join(map(str, row["drop_blocks"])) if row["drop_blocks"] is not None else ""
        writer.writerow(flat)
    written.append(write_text(out / "candidates.csv", buffer.getvalue()))
    plot = plot_pareto(rows, out / "pareto.png", usable_bytes, document["ranked_by"])
    if plot is not None:
        written.append(plot)
    return written


def plot_pareto(rows: list[dict[str, Any]], path: Path, usable_bytes: int, ranked_by: str) -> Path | None:
    """Memory vs objective (or proxy) of every candidate, with the budget line; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "note: matplotlib is not installed, skipping pareto.png (pip install 'minitron[plot]')",
            file=sys.stderr,
        )
        return None
    key = "objective" if ranked_by == "objective" else "proxy"
    unit, scale = byte_unit(usable_bytes)  # one unit for the axis and the budget line's label
    xs = [r["memory"]["total_bytes"] / scale for r in rows]
    ys = [r[key] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if any(r["active_params"] != r["params"] for r in rows):  # MoE: colour by what one token passes
        dots = ax.scatter(xs, ys, s=12, c=[r["active_params"] / 1e9 for r in rows], cmap="viridis",
                          alpha=0.8, label="candidates")  # fmt: skip
        fig.colorbar(dots, ax=ax, label="active parameters (B)")
    else:
        ax.scatter(xs, ys, s=12, c="tab:blue", alpha=0.6, label="candidates")
    if rows:
        ax.scatter(xs[:1], ys[:1], s=60, c="tab:red", marker="*", label="rank 1")
    ax.axvline(
        usable_bytes / scale,
        color="tab:red",
        linestyle="--",
        label=f"budget {usable_bytes / scale:.2f} {unit}",
    )
    ax.set_xlabel(f"serving memory ({unit})")
    ax.set_ylabel(
        f"{ranked_by} (lower is better)" if key == "objective" else f"proxy ({ranked_by}, higher is better)"
    )
    ax.legend(frameon=False, fontsize=8)
    return write_png(path, fig)


def candidates_table(document: dict[str, Any], limit: int = 15):
    from rich.table import Table

    gpu = document["throughput"]["gpu"]
    title = (
        f"search: {document['feasible']:,} feasible of {document['space']['configurations']:,} configurations "
        f"under {format_bytes(document['budget']['usable_bytes'])}; ranked by {document['ranked_by']}"
    )
    table = Table(title=title, caption=f"blocks dropped: {document['space']['depth_assumption']}")
    rows = document["candidates"][:limit]
    shown = [a for a in width_axes() if any(r.get(a.name) is not None for r in rows)]  # the family's axes
    # Memory columns in the budget's unit (MiB for a tiny model, GiB for 12B), named in the header.
    unit, scale = byte_unit(document["budget"]["usable_bytes"])
    moe = "active_params" in document["source"]["architecture"]  # MoE sources: what one token passes
    blocks = "blocks M/-/*/E" if moe else "blocks M/-/*"
    columns = ("rank", blocks, *(a.column or a.name for a in shown), "params", *(["active"] if moe else []),
               f"weights {unit}", f"KV {unit}", f"SSM+conv {unit}", "spare", f"tok/s {gpu}",
               document["ranked_by"])  # fmt: skip
    for c in columns:
        table.add_column(c, justify="left" if c == blocks else "right")
    for row in rows:
        mem = row["memory"]
        value = row["objective"] if document["ranked_by"] == "objective" else row["proxy"]
        layers = row[depth_axis().name]
        dense = row["mlp_blocks"] == row["attention_blocks"] == layers  # Llama-family layers
        counts = [
            row["mamba_blocks"],
            row["mlp_blocks"],
            row["attention_blocks"],
            *([row["moe_blocks"]] if moe else []),
        ]
        table.add_row(
            str(row["rank"]),
            f"{layers} layers" if dense else "/".join(map(str, counts)),
            *(str(row[a.name]) for a in shown),
            _count(row["params"]),
            *([_count(row["active_params"])] if moe else []),
            f"{mem['weights_bytes'] / scale:.2f}",
            f"{mem['kv_cache_bytes'] / scale:.2f}",
            f"{(mem['ssm_state_bytes'] + mem['conv_state_bytes']) / scale:.3f}",
            format_bytes(row["spare_bytes"]),
            f"{row['decode_tokens_per_s']:,.1f}",
            f"{value:.5g}",
        )
    return table


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)
