import dataclasses
import importlib
import json

import pytest
import torch
from importance_helpers import TINY
from typer.testing import CliRunner

from minitron.cli import app
from minitron.errors import MinitronError
from minitron.importance.run import ScoreConfig, run
from minitron.importance.scores import load_scores
from minitron.model.load import resolve_model

runner = CliRunner()


def _score_args(ckpt, data, out, *extra):
    return ["score", str(ckpt), "--data", str(data), "--samples", "6", "--seq-len", "24", "--batch-size", "4",
            "--out", str(out), *extra]  # fmt: skip


def test_cli_writes_scores_summary_and_plot(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "run" / "scores.safetensors"
    result = runner.invoke(app, _score_args(ckpt, data, out, "--depth-mode", "one-shot"))
    assert result.exit_code == 0, result.output
    assert "Block importance" in result.output and "Width importance" in result.output
    scores = load_scores(out)
    assert scores.header["samples"] == 6
    assert scores.header["fingerprint"] == resolve_model(str(ckpt)).fingerprint()
    assert scores.header["architecture"] == TINY.summary()
    assert scores.header["settings"]["aggregation"] == "mean-l2"
    assert scores.header["data"]["kind"] == "jsonl" and scores.header["data"]["samples"] == 6
    assert scores.get("hidden").shape == (TINY.hidden,)
    assert scores.get("mamba.0").shape == (TINY.mamba_heads, TINY.mamba_head_dim)
    assert scores.get("attn_heads.2").shape == (TINY.attn_heads,)
    assert scores.get("ffn.1").shape == (TINY.ffn,)
    assert sorted(scores.get("depth.order").tolist()) == list(range(TINY.n_blocks))
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [row["rank"] for row in summary["depth"]] == list(range(1, TINY.n_blocks + 1))
    assert summary["depth"][-1]["block"] == scores.get("depth.order")[0].item()
    png = tmp_path / "run" / "scores-depth.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_json_and_no_width(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "s.safetensors"
    result = runner.invoke(app, _score_args(ckpt, data, out, "--no-width", "--depth", "cosine", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "width" not in summary and len(summary["depth"]) == TINY.n_blocks
    scores = load_scores(out)
    assert not scores.has_width() and scores.has_depth()


def test_cli_width_only_writes_no_plot(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "w.safetensors"
    result = runner.invoke(app, _score_args(ckpt, data, out, "--depth", "none", "--aggregation", "l2-l2"))
    assert result.exit_code == 0, result.output
    assert load_scores(out).has_width() and not (tmp_path / "w-depth.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--depth", "l1"], "--depth must be one of"),
        (["--depth-mode", "greedy"], "--depth-mode must be one of"),
        (["--aggregation", "max"], "--aggregation must be one of"),
        (["--samples", "0"], "--samples must be positive"),
        (["--no-width", "--depth", "none"], "nothing to score"),
        (["--depth-iterations", "-1"], "--depth-iterations must be 0 or more, got -1"),
        (
            ["--depth-mode", "one-shot", "--depth-iterations", "2"],
            "--depth-iterations applies to --depth-mode iterative",
        ),
        (["--depth-samples", "0"], "--depth-samples must be between 1 and --samples (6), got 0"),
        (["--depth-samples", "-2"], "--depth-samples must be between 1 and --samples (6), got -2"),
        (["--depth-samples", "7"], "--depth-samples must be between 1 and --samples (6), got 7"),
    ],
)
def test_cli_bad_options_are_one_line_errors(scored_checkpoint, tmp_path, extra, message):
    ckpt, data = scored_checkpoint
    result = runner.invoke(app, _score_args(ckpt, data, tmp_path / "x.safetensors", *extra))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_short_data_error_names_only_options_score_has(scored_checkpoint, tmp_path):
    ckpt, _ = scored_checkpoint
    data = tmp_path / "short.jsonl"  # a few documents: fewer tokens than the model's 4096 positions
    data.write_text('{"text": "def f(x):\\n    return x"}\n' * 3)
    out = tmp_path / "s" / "x.safetensors"
    result = runner.invoke(app, _score_args(ckpt, data, out, "--seq-len", "4096"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: data '{data}': the train split has fewer than --seq-len 4096 tokens; "
        "use more text or a shorter --seq-len"
    ]  # score has no --heldout-fraction to suggest
    assert not out.exists()


def test_cli_config_only_preset_is_refused(tmp_path):
    result = runner.invoke(app, ["score", "nemotron-nano-9b-v2", "--out", str(tmp_path / "s.safetensors")])
    assert result.exit_code == 1 and "config-only preset" in result.output


def test_cli_help():
    result = runner.invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "--depth-mode" in result.output


def test_scores_for_another_model_fail_clearly(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "s.safetensors"
    config = ScoreConfig(model=str(ckpt), data=str(data), samples=4, seq_len=16, batch_size=4, out=out,
                         depth="none", progress=False, report=False)  # fmt: skip
    run(config)
    scores = load_scores(out)
    source = resolve_model(str(ckpt))
    scores.check_matches(source.architecture, source.fingerprint())
    with pytest.raises(MinitronError, match="different architecture"):
        scores.check_matches(TINY.drop_blocks([0]))
    with pytest.raises(MinitronError, match="ffn=64"):
        scores.check_matches(TINY.with_sizes(ffn=48))
    with pytest.raises(MinitronError, match="other weights"):
        scores.check_matches(TINY, "0123456789abcdef")


def test_rerun_replaces_scores_atomically(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "s.safetensors"
    base = ScoreConfig(model=str(ckpt), data=str(data), samples=4, seq_len=16, batch_size=4, out=out,
                       depth="none", progress=False, report=False)  # fmt: skip
    first = run(base)
    second = run(dataclasses.replace(base, aggregation="mean-mean"))
    loaded = load_scores(out)
    assert loaded.header["settings"]["aggregation"] == "mean-mean"
    torch.testing.assert_close(loaded.get("hidden"), second.tensors["hidden"])
    assert not torch.allclose(first.tensors["hidden"], second.tensors["hidden"])


def test_short_data_warns_and_records_the_real_sample_count(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    out = tmp_path / "s.safetensors"
    args = ["score", str(ckpt), "--data", str(data), "--samples", "100000", "--seq-len", "256",
            "--batch-size", "16", "--depth", "none", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    samples = load_scores(out).header["samples"]
    assert 0 < samples < 100000
    assert f"holds only {samples} sequences" in result.output


def test_missing_matplotlib_skips_the_plot_with_one_warning(tmp_path, monkeypatch, capsys):
    from minitron.importance.report import plot_depth
    from minitron.importance.scores import Scores

    scores = Scores(
        tensors={"depth.scores": torch.rand(TINY.n_blocks), "depth.order": torch.arange(TINY.n_blocks)},
        header={"architecture": TINY.summary()},
    )
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert plot_depth(scores, tmp_path / "p.png") is None
    assert not (tmp_path / "p.png").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib is not installed" in err[0]


def test_text_field_option_reaches_the_data(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(data.read_text().replace('"text":', '"body":'))
    out = tmp_path / "s.safetensors"
    args = ["score", str(ckpt), "--data", str(renamed), "--samples", "4", "--seq-len", "16", "--batch-size", "4",
            "--depth", "none", "--out", str(out)]  # fmt: skip
    assert "no field 'text'" in runner.invoke(app, args).output
    result = runner.invoke(app, [*args, "--text-field", "body"])
    assert result.exit_code == 0, result.output
    assert load_scores(out).header["data"]["text_field"] == "body"


def test_depth_samples_scores_depth_on_the_first_samples_only(scored_checkpoint, tmp_path, monkeypatch):
    """Width sees every calibration sample, depth only the first --depth-samples of them."""
    run_module = importlib.import_module("minitron.importance.run")  # the package exports run()
    from minitron.importance import width

    seen = {}

    def spy(name, real):
        def wrapper(model, batches, *args, **kwargs):
            seen[name] = [ids.clone() for ids in batches]
            return real(model, batches, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(width, "score_width", spy("width", width.score_width))
    monkeypatch.setattr(run_module, "score_depth", spy("depth", run_module.score_depth))
    ckpt, data = scored_checkpoint
    out = tmp_path / "s.safetensors"
    args = _score_args(ckpt, data, out, "--depth-samples", "3", "--depth-mode", "one-shot")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    width_ids, depth_ids = torch.cat(seen["width"]), torch.cat(seen["depth"])
    assert width_ids.shape[0] == 6 and depth_ids.shape[0] == 3  # batches of 4: the second is cut
    assert torch.equal(depth_ids, width_ids[:3])
    header = load_scores(out).header
    assert header["samples"] == 6 and header["settings"]["depth_samples"] == 3


def test_work_estimate_is_printed_before_a_long_run(scored_checkpoint, tmp_path, monkeypatch, capsys):
    """Before any pass starts, a run that would take long here says how much work it is: passes,
    block runs (the formula's count), tokens; on a CPU it suggests the CPU settings."""
    run_module = importlib.import_module("minitron.importance.run")  # the package exports run()
    from minitron.importance import width
    from minitron.importance.depth import depth_block_runs

    ckpt, data = scored_checkpoint
    config = ScoreConfig(model=str(ckpt), data=str(data), samples=6, seq_len=24, batch_size=4, depth_samples=4,
                         depth_iterations=2, out=tmp_path / "s.safetensors", device="cpu", report=False)  # fmt: skip
    printed_before = []
    real_width = width.score_width

    def first_pass(*args, **kwargs):
        printed_before.append(capsys.readouterr().err)
        return real_width(*args, **kwargs)

    monkeypatch.setattr(width, "score_width", first_pass)
    run(dataclasses.replace(config, out=tmp_path / "short.safetensors"))  # a short run: no note
    assert "note: this run is" not in printed_before[-1]
    monkeypatch.setattr(run_module, "LONG_RUN_SECONDS", 0)  # every run is long
    run(config)
    notes = [line for line in printed_before[-1].splitlines() if line.startswith("note: ")]
    runs = depth_block_runs(TINY.n_blocks, "iterative", "mse", 2)  # one depth batch of 4 samples
    assert notes[0].startswith(
        f"note: this run is 1 width pass ({6 * 24:,} tokens) and 3 depth passes ({runs:,} block runs over "
        f"{runs * 4 * 24:,} block-tokens), about "
    )
    assert (
        notes[0].endswith("on cpu") and "--depth-iterations 6" in notes[1] and "--depth-samples" in notes[1]
    )


def test_seq_len_above_the_positions_is_refused_before_reading(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    result = runner.invoke(app, _score_args(ckpt, data, tmp_path / "x.safetensors", "--seq-len", "100000"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: --seq-len 100,000 is above {ckpt}'s max_position_embeddings 4,096"
    ]
