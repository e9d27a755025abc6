"""Issue 20 item 4: the report's "next" command works as printed, and a refused resume names only the
settings that differ (before: `--steps N` without the run's settings, refused with two whole dicts)."""

from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

from issue20_helpers import distill_argv, invoke, last_step, one_error_line

from minitron.pipeline.report import next_steps
from minitron.pipeline.stages import Paths


def test_next_command_resumes_the_run_and_a_refusal_names_one_setting(tmp_path):
    paths = Paths(tmp_path / "run")
    argv = distill_argv(paths.distill)
    assert invoke(*argv).exit_code == 0
    paths.marker("distill").parent.mkdir(parents=True)
    paths.marker("distill").write_text(json.dumps({"stage": "distill", "done": True, "argv": argv}))

    config = SimpleNamespace(teacher="tiny", out=paths.run)
    (line,) = [s for s in next_steps(config, paths) if s.startswith("minitron distill")]
    words = shlex.split(line.split("    #")[0])
    assert words[-3:] == ["--resume", "--steps", "4"] and "--seq-len" in words
    result = invoke(*words[1:])
    assert result.exit_code == 0, result.output
    assert last_step(paths.distill) == 4

    # the same resume with another sequence length: one line naming that one setting
    changed = [*words[1:-1], "8", "--seq-len", "64"]
    error = one_error_line(invoke(*changed))
    assert "data.seq_len: 32 -> 64" in error
    assert "batch_size" not in error and "{" not in error and len(error) < 200
