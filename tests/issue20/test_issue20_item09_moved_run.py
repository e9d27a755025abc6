"""Issue 20 item 9: a run directory moved elsewhere resumes (before: --resume compared the --out path)."""

from __future__ import annotations

import shutil

from issue20_helpers import distill_argv, invoke, last_step


def test_moved_distill_run_resumes(tmp_path):
    first = tmp_path / "here" / "distill"
    assert invoke(*distill_argv(first, steps=2)).exit_code == 0
    moved = tmp_path / "elsewhere" / "distill"
    shutil.move(first.parent, moved.parent)
    result = invoke(*distill_argv(moved, steps=3), "--resume")
    assert result.exit_code == 0, result.output
    assert last_step(moved) == 3 and not first.exists()


def test_moved_compare_settings_do_not_name_paths(tmp_path):
    from minitron.distill.compare import CompareConfig, _settings
    from minitron.distill.trainer import TrainConfig

    candidates = tmp_path / "a" / "candidates.json"
    candidates.parent.mkdir()
    candidates.write_text('{"candidates": []}')
    moved = tmp_path / "b" / "candidates.json"
    moved.parent.mkdir()
    shutil.copy(candidates, moved)

    def settings(path):
        return _settings(CompareConfig("tiny", str(path), str(path.parent / "out"), TrainConfig()), "fp")

    assert settings(candidates) == settings(moved)
    moved.write_text('{"candidates": [], "x": 1}')
    assert settings(candidates) != settings(moved)  # the content still counts
