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
