"""The axis table drives the options, the candidates file and the tables: a toy axis added to a copy
of the table shows up in all of them; and the table agrees with the family adapters."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json

import pytest
from typer.testing import CliRunner

from minitron.model import axes as axes_module
from minitron.model.arch import ATTENTION
from minitron.model.axes import Axis, axes, width_axes
from minitron.model.load import resolve_model

TINY = resolve_model("tiny").architecture
TOY = Axis("head_dim", "--head-dim", "attention head width (toy)", ("head_dim",), part=ATTENTION, step=4,
           max_prune=None, column="toy hd")  # fmt: skip


@pytest.fixture
def toy_cli(monkeypatch):
    """minitron.cli rebuilt over a copy of the table with one more axis; the real one restored after."""
    import minitron.cli

    monkeypatch.setattr(axes_module, "AXES", (*axes_module.AXES, TOY))
    yield importlib.reload(minitron.cli)
    monkeypatch.undo()
    importlib.reload(minitron.cli)


def test_toy_axis_reaches_prune_options_and_target(toy_cli, tmp_path):
    runner = CliRunner()
    flat = " ".join(runner.invoke(toy_cli.app, ["prune", "--help"]).stdout.split())
    assert "--head-dim <int> Target attention head width (toy)." in flat
    # The option reaches the TargetSpec: with --candidate it is one of the flags to drop.
    result = runner.invoke(
        toy_cli.app,
        ["prune", "tiny", "--out", str(tmp_path / "o"), "--candidate", "c.json", "--head-dim", "8"],
    )
    assert result.exit_code == 1 and "drop --head-dim" in result.output, result.output
    from minitron.prune.run import PruneConfig, PruneResult, summary_table

    config = PruneConfig.from_options(model="tiny", out=str(tmp_path / "o"), head_dim=8)
    assert config.target.head_dim == 8 and config.target.sizes() == {"head_dim": 8}
    small = dataclasses.replace(TINY, head_dim=TINY.head_dim // 2)
    table = summary_table(PruneResult(out=tmp_path, source=TINY, target=small, record={}))
    assert "head_dim" in [cell for cell in table.columns[0]._cells]


def test_toy_axis_reaches_search_options_candidates_and_tables(toy_cli, tmp_path):
    runner = CliRunner()
    flat = " ".join(runner.invoke(toy_cli.app, ["search", "--help"]).stdout.split())
    assert "--head-dim <str> Attention head width (toy) to try:" in flat
    half = TINY.head_dim // 2
    out = tmp_path / "s"
    result = runner.invoke(
        toy_cli.app,
        ["search", "tiny", "--no-eval", "--budget", "1GiB", "--context", "8k", "--out", str(out), "--layers",
         "source", "--hidden", "source", "--ffn", "source", "--mamba-heads", "source", "--mamba-head-dim",
         "source", "--head-dim", f"{half},{TINY.head_dim}"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "candidates.json").read_text())
    assert doc["space"]["head_dim"] == [TINY.head_dim, half]
    assert sorted(r["head_dim"] for r in doc["candidates"]) == [half, TINY.head_dim]
    with open(out / "candidates.csv") as f:
        assert sorted(int(r["head_dim"]) for r in csv.DictReader(f)) == [half, TINY.head_dim]
    assert "toy hd" in result.output  # the rich table's column
    from minitron.distill.compare import _describe
    from minitron.pipeline.report import _markdown
    from minitron.prune.target import read_candidate

    spec = read_candidate(out / "candidates.json", 1)
    assert spec.head_dim in (half, TINY.head_dim)
    assert f"head_dim={TINY.head_dim}" in _describe(TINY, ())
    report = _markdown(*report_inputs(tmp_path, doc, None))
    assert "| rank | layers | hidden | ffn | mamba_heads | mamba_head_dim | attn_heads | head_dim |" in report


def report_inputs(run, candidates, compare):
    """What pipeline.report._markdown takes, for a run that scored, searched and compared."""
    from types import SimpleNamespace

    config = SimpleNamespace(out=run, teacher="tiny", source=None, eval_tasks=None)
    evaluation = {"heldout": {"sequences": 1, "seq_len": 8},
                  "models": {"teacher": {"params": 1, "loss": 1.0, "path": "tiny", "generations": []}}}  # fmt: skip
    return config, None, evaluation, candidates, compare, [], {}


def test_table_matches_the_family_adapters():
    """Every width axis is an Architecture field its families write to the config keys the table names;
    which families have an axis follows from their block kinds."""
    from tiny_models import TINY as TINY_NEMOTRON
    from tiny_models import dense_arch, moe_arch

    assert [a.name for a in axes()] == [
        "layers",
        "hidden",
        "ffn",
        "mamba_heads",
        "mamba_head_dim",
        "attn_heads",
        "experts",
        "expert_ffn",
        "shared_ffn",
    ]
    for arch in (TINY_NEMOTRON, dense_arch("llama"), moe_arch("nemotron_h"), moe_arch("qwen3_moe")):
        config = arch.to_config_dict()
        present = [a for a in width_axes() if a.name not in arch.absent_axes()]
        assert all(a.in_family(arch.family) for a in present)
        for a in present:
            assert any(config.get(key) == getattr(arch, a.name) for key in a.config_keys), a.name
    moe = {"experts", "expert_ffn", "shared_ffn"}
    assert dense_arch("llama").absent_axes() == {"mamba_heads", "mamba_head_dim"} | moe
    assert TINY_NEMOTRON.absent_axes() == moe and moe_arch("qwen3_moe").absent_axes() >= {"shared_ffn"}
