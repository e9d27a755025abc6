"""`minitron prune` through typer, in-process."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from minitron.cli import app


def test_help_lists_every_target_flag():
    result = CliRunner().invoke(app, ["prune", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--hidden",
        "--ffn",
        "--mamba-heads",
        "--mamba-head-dim",
        "--attn-heads",
        "--layers",
        "--drop-blocks",
        "--candidate",
        "--rank",
        "--scores",
        "--overwrite",
        "--max-shard-size",
    ):
        assert flag in result.output


def test_prune_command_writes_a_checkpoint(tmp_path, tiny_checkpoint, scores_file):
    out = tmp_path / "out"
    args = [
        "prune",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--scores",
        str(scores_file),
        "--hidden",
        "24",
        "--ffn",
        "48",
        "--attn-heads",
        "2",
        "--mamba-heads",
        "4",
        "--drop-blocks",
        "1,6",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "source vs target" in result.output and "hidden" in result.output
    record = json.loads((out / "minitron.json").read_text())
    assert record["target"]["hidden"] == 24 and record["dropped_blocks"] == [1, 6]
    assert record["command"].startswith("minitron prune ")
    assert "--drop-blocks 1,6" in record["command"] and "--overwrite" not in record["command"]


def test_errors_are_one_line(tmp_path, tiny_checkpoint):
    result = CliRunner().invoke(
        app, ["prune", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--ffn", "8"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: width pruning (--ffn) needs --scores (run `minitron score` first)"
    ]
    result = CliRunner().invoke(
        app, ["prune", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--drop-blocks", "x"]
    )
    assert result.exit_code == 1 and "error: --drop-blocks takes comma-separated" in result.output


def test_no_target_is_refused_and_writes_nothing(tmp_path, tiny_checkpoint):
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["prune", str(tiny_checkpoint), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: nothing to prune: give target sizes (--hidden, --ffn, --mamba-heads, --mamba-head-dim, "
        "--attn-heads, --experts, --expert-ffn, --shared-ffn, --layers or --drop-blocks) or a search "
        "result (--candidate FILE)"
    ]
    assert not out.exists()


def test_max_shard_size_overflow_is_one_line(tmp_path, tiny_checkpoint):
    result = CliRunner().invoke(
        app,
        ["prune", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--drop-blocks", "1", "--max-shard-size", "1e400"],
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --max-shard-size: '1e400' is too large to be a size such as 22GiB, 24GB or 19660MiB"
    ]


def test_pruned_checkpoint_directory_is_world_readable(tmp_path, tiny_checkpoint):
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["prune", str(tiny_checkpoint), "--out", str(out), "--drop-blocks", "1"])
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # what mkdir gives, not mkdtemp's 0700
