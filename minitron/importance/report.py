"""What a person reads after scoring: a JSON summary, rich tables and a plot of block importance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from minitron.atomic import write_png
from minitron.importance.scores import Scores
from minitron.model.arch import BLOCK_NAMES

BLOCK_COLOURS = {
    "mamba": "tab:blue",
    "mlp": "tab:orange",
    "attention": "tab:green",
    "layer": "tab:purple",
    "moe": "tab:red",
    "moe_layer": "tab:brown",
}


def block_ranking(scores: Scores) -> list[dict[str, Any]]:
    """One row per block, most important first (rank 1 = removed last)."""
    pattern = scores.header["architecture"]["pattern"]
    order = scores.get("depth.order").tolist()
    values = scores.get("depth.scores").tolist()
    rows = []
    for rank, block in enumerate(reversed(order), 1):
        rows.append(
            {"rank": rank, "block": block, "type": BLOCK_NAMES[pattern[block]], "score": values[block]}
        )
    return rows


def _spread(values: torch.Tensor) -> dict[str, float]:
    v = values.double().flatten()
    return {
        "min": v.min().item(),
        "median": v.median().item(),
        "max": v.max().item(),
        "max/min": (v.max() / v.min()).item() if v.min() > 0 else float("inf"),
    }


def width_summary(scores: Scores) -> dict[str, dict[str, Any]]:
    """Per axis: how many units were scored (in how many blocks) and how the scores spread."""
    axes: dict[str, list[torch.Tensor]] = {}
    for key, value in scores.tensors.items():
        if key == "hidden":
            axes["hidden channels"] = [value]
        elif key.startswith("ffn."):
            axes.setdefault("FFN neurons", []).append(value)
        elif key.startswith("attn_heads."):
            axes.setdefault("attention heads", []).append(value)
        elif key.startswith("mamba."):
            axes.setdefault("Mamba heads", []).append(value.double().norm(dim=1))
            axes.setdefault("Mamba head channels", []).append(value.double().norm(dim=0))
        elif key.startswith("experts."):
            axes.setdefault("routed experts", []).append(value)
        elif key.startswith("expert_ffn."):
            axes.setdefault("expert FFN neurons", []).append(value)
        elif key.startswith("shared_ffn."):
            axes.setdefault("shared expert neurons", []).append(value)
    return {
        # hidden scores are one vector summed over every block
        axis: {
            "blocks": scores.header["architecture"]["blocks"] if axis == "hidden channels" else len(values),
            "units": values[0].numel(),
            **_spread(torch.cat(values)),
        }
        for axis, values in axes.items()
    }


def summary(scores: Scores) -> dict[str, Any]:
    out: dict[str, Any] = {"header": scores.header}
    if scores.has_width():
        out["width"] = width_summary(scores)
    if scores.has_depth():
        out["depth"] = block_ranking(scores)
    return out


def depth_bar_labels(scores: Scores) -> list[str]:
    """Each block's rank as in the table (1 = most important, removed last), in block order.

    Read from the ranking, not from the bar heights: iterative scores do not imply the order."""
    rank = {row["block"]: row["rank"] for row in block_ranking(scores)}
    return [str(rank[i]) for i in range(len(rank))]


def plot_depth(scores: Scores, path: Path) -> Path | None:
    """Bar chart of block scores along depth, coloured by block type; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        print(
            "warning: matplotlib is not installed, skipping the depth plot (pip install 'minitron[plot]')",
            file=sys.stderr,
        )
        return None
    pattern = scores.header["architecture"]["pattern"]
    values = scores.get("depth.scores").tolist()
    names = [BLOCK_NAMES[c] for c in pattern]
    settings = scores.header.get("settings", {})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(values) + 2), 3.5))
    bars = ax.bar(range(len(values)), values, color=[BLOCK_COLOURS[n] for n in names])
    ax.bar_label(bars, labels=depth_bar_labels(scores), fontsize=7)
    if min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel(f"importance ({settings.get('depth', 'depth')}, {settings.get('depth_mode', '')})")
    ax.set_title(f"Block importance of {scores.header.get('model', 'model')}")
    handles = [Patch(color=BLOCK_COLOURS[n], label=n) for n in BLOCK_COLOURS if n in names]
    ax.legend(handles=handles, frameon=False, title="bar label = rank (1 = most important)", title_fontsize=7)
    return write_png(path, fig, dpi=120)


def print_report(scores: Scores, files: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if scores.has_depth():
        settings = scores.header.get("settings", {})
        table = Table(
            title=f"Block importance ({settings.get('depth')}, {settings.get('depth_mode')})",
            caption="rank 1 = most important; depth pruning drops from the bottom of this table",
        )
        for column in ("rank", "block", "type", "score"):
            table.add_column(column, justify="left" if column == "type" else "right")
        for row in block_ranking(scores):
            table.add_row(str(row["rank"]), str(row["block"]), row["type"], f"{row['score']:.4g}")
        console.print(table)
    if scores.has_width():
        table = Table(title=f"Width importance ({scores.header.get('settings', {}).get('aggregation')})")
        for column in ("axis", "blocks", "units", "min", "median", "max", "max/min"):
            table.add_column(column, justify="left" if column == "axis" else "right")
        for axis, s in width_summary(scores).items():
            table.add_row(
                axis,
                str(s["blocks"]),
                str(s["units"]),
                *(f"{s[k]:.4g}" for k in ("min", "median", "max", "max/min")),
            )
        console.print(table)
    for file in files:
        console.print(f"wrote {file}")


def print_json(scores: Scores) -> None:
    """`minitron score --json`: the summary on stdout, from rank 0 only under torchrun."""
    from minitron.atomic import json_text
    from minitron.parallel import rank_and_world

    if rank_and_world()[0] == 0:
        print(json_text(summary(scores), sort_keys=True))
