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
        [
            "prune",
            str(tiny_checkpoint),
            "--out",
            str(tmp_path / "o"),
            "--drop-blocks",
            "1",
            "--max-shard-size",
            "1e400",
        ],
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


def test_pruned_checkpoint_carries_a_model_card_with_the_printed_figures(
    tmp_path, tiny_checkpoint, scores_file
):
    from huggingface_hub import ModelCard

    from minitron.model.load import resolve_model

    (tiny_checkpoint / "README.md").write_text(
        "---\nlicense: other\nlicense_name: tiny-licence\n---\n# teacher\n"
    )
    memory = {"weights_bytes": 1000, "kv_cache_bytes": 200, "ssm_state_bytes": 30, "conv_state_bytes": 4,
              "total_bytes": 1234}  # fmt: skip
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps({
        "serving": {"context_tokens": 8192, "batch": 1, "weight_dtype": "bfloat16"},
        "candidates": [{"rank": 1, "drop_blocks": [0], "hidden": 24, "ffn": 48, "attn_heads": 4, "mamba_heads": 8,
                        "mamba_head_dim": 4, "memory": memory}],
    }))  # fmt: skip
    out = tmp_path / "out"
    args = ["prune", str(tiny_checkpoint), "--out", str(out), "--scores", str(scores_file), "--candidate",
            str(candidates)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == str(tiny_checkpoint) and card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation" and "pruned" in card.data.tags
    assert (card.data.license, card.data.license_name) == (
        "other",
        "tiny-licence",
    )  # the teacher's, carried over
    source = resolve_model(str(tiny_checkpoint)).architecture
    target = resolve_model(str(out)).architecture
    printed = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
               for line in result.output.splitlines() if line.count("│") >= 5}  # fmt: skip
    for axis in ("params", "hidden", "ffn", "mamba_heads", "mamba_head_dim", "blocks"):
        before, after, kept = printed[axis]
        assert f"| {axis} | {before} | {after} | {kept} |" in card.text
    assert f"| hidden | {source.hidden:,} | {target.hidden:,} |" in card.text
    assert "1,234 bytes) at context 8192, batch 1, weights in bfloat16" in card.text
    assert "| KV cache | 200 |" in card.text
    assert f"minitron prune {tiny_checkpoint} --out {out}" in card.text
    assert "released under other (tiny-licence)" in card.text
