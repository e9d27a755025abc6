"""Issue 20 item 11: a task YAML whose template names a field its documents lack is one error line
(before: a jinja2 traceback from inside lm-eval)."""

from __future__ import annotations

import pytest
from issue20_helpers import invoke, one_error_line, task_yaml


def test_missing_template_field(tmp_path):
    pytest.importorskip("lm_eval")
    task = task_yaml(tmp_path, "nc_missing_field", "{{question}}")
    line = one_error_line(invoke("evaluate", "tiny", "--tasks", task, "--limit", 1, "--out", tmp_path / "e"))
    assert "template cannot be filled" in line and "'question' is undefined" in line
    assert not (tmp_path / "e").exists()
