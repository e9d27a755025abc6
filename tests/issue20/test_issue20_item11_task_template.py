"""Issue 20 item 11: a task YAML whose template names a field its documents lack is one error line
(before: a jinja2 traceback from inside lm-eval)."""

from __future__ import annotations

import json

import pytest
from issue20_helpers import invoke, one_error_line


def test_missing_template_field(tmp_path):
    pytest.importorskip("lm_eval")
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"q": f"{i} plus {i} is", "choices": ["a", "b"], "label": 0}) + "\n"
                            for i in range(3)))  # fmt: skip
    task = tmp_path / "missing.yaml"
    task.write_text(
        "task: nc_missing_field\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    line = one_error_line(invoke("evaluate", "tiny", "--tasks", task, "--limit", 1, "--out", tmp_path / "e"))
    assert "template cannot be filled" in line and "'question' is undefined" in line
    assert not (tmp_path / "e").exists()
