"""Issue 20 item 7: tables and plots that read sensibly: compare's table is not squeezed when piped,
search's memory columns carry a unit that suits the model, the pareto axis and legend agree, and the
objective axis says lower is better."""

from __future__ import annotations

import io
import json

from issue20_helpers import invoke
from rich.console import Console


def test_compare_table_is_wide_when_piped(monkeypatch):
    from minitron.distill.compare import CandidateResult, _wide_console, table

    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    console = _wide_console()
    console.file = io.StringIO()
    name = "25M/27-/4* (drop 3,17,21,30,44,58) h120 ffn448 mamba24x8 attn10"
    row = CandidateResult(1, name, 7_000_000, 19 * 2**20, 0.12, 0.5, 0.2, 4.1, 3.9, 3.5, rank_after=1)
    console.print(table([row]))
    assert name in console.file.getvalue()  # on one line: not folded over several


def test_search_table_and_plot_units_for_a_tiny_model(tmp_path, monkeypatch):
    import matplotlib.axes

    labels = {}
    real_xlabel, real_ylabel = matplotlib.axes.Axes.set_xlabel, matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_xlabel",
        lambda ax, text, *a, **k: labels.setdefault("x", text) and real_xlabel(ax, text, *a, **k),
    )
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_ylabel",
        lambda ax, text, *a, **k: labels.setdefault("y", text) and real_ylabel(ax, text, *a, **k),
    )
    result = invoke("search", "tiny", "--budget", "20MiB", "--context", "8k", "--no-eval", "--layers", "56",
                    "--granularity", "8", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert labels["x"] == "serving memory (MiB)"
    from minitron.search.report import candidates_table

    document = json.loads((tmp_path / "candidates.json").read_text())
    console = Console(file=io.StringIO(), width=250)
    console.print(candidates_table(document))
    text = console.file.getvalue()
    assert "weights MiB" in text and "KV MiB" in text and "SSM+conv MiB" in text
    weights = document["candidates"][0]["memory"]["weights_bytes"] / 2**20
    assert f"{weights:.2f}" in text and weights > 1  # MiB figures, not 0.01 GiB


def test_objective_axis_says_lower_is_better(tmp_path, monkeypatch):
    import matplotlib.axes

    from minitron.search.report import plot_pareto

    seen = []
    real = matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_ylabel", lambda ax, t, *a, **k: seen.append(t) or real(ax, t)
    )
    rows = [{"memory": {"total_bytes": 20 * 2**30}, "objective": 0.3, "params": 10, "active_params": 10}]
    plot_pareto(rows, tmp_path / "p.png", 21 * 2**30, "objective")
    assert seen == ["objective (lower is better)"] and (tmp_path / "p.png").exists()
