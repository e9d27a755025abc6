"""What a person reads after scoring agrees with itself: the plot's ranks are the table's, JSON is strict."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from minitron.cli import app
from minitron.importance.report import block_ranking, depth_bar_labels
from minitron.importance.scores import load_scores


def test_plot_labels_are_the_table_ranks_and_json_is_strict(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "scores.safetensors"
    args = ["score", str(ckpt), "--data", str(data), "--samples", "4", "--seq-len", "24", "--batch-size", "4",
            "--depth-mode", "one-shot", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = load_scores(out)
    order = scores.get("depth.order").tolist()
    labels = depth_bar_labels(scores)
    assert labels[order[-1]] == "1"  # removed last = most important = rank 1, as in the table
    assert labels[order[0]] == str(len(order))
    assert {row["block"]: str(row["rank"]) for row in block_ranking(scores)} == dict(enumerate(labels))

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(out.with_suffix(".json").read_text(), parse_constant=refuse)


def test_unbounded_spread_is_null_in_json_output_and_file(scored_checkpoint, tmp_path):
    """An FFN neuron that never fires scores 0, so the spread max/min is infinite: JSON null, not a
    bare Infinity, on stdout (--json) and in the .json summary."""
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt, data = scored_checkpoint
    dead = tmp_path / "dead-neuron"
    shutil.copytree(ckpt, dead)
    weights = load_file(dead / "model.safetensors")
    up = next(k for k in sorted(weights) if k.endswith("up_proj.weight"))
    weights[up][0] = 0.0  # neuron 0 of that MLP block: relu2(0) = 0 on every token
    save_file(weights, dead / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "scores.safetensors"
    args = ["score", str(dead), "--data", str(data), "--samples", "4", "--seq-len", "24", "--batch-size", "4",
            "--depth", "none", "--json", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    for text in (result.stdout, out.with_suffix(".json").read_text()):
        summary = json.loads(text, parse_constant=refuse)
        assert summary["width"]["FFN neurons"]["min"] == 0.0
        assert summary["width"]["FFN neurons"]["max/min"] is None
