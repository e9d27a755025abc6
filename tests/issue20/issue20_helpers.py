"""Shared by the issue 20 tests: in-process invocation, the one-error-line check, odd checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from minitron.cli import app
from minitron.model.load import ASSETS_DIR


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    """The run failed with exit 1, printed no traceback and said why in exactly one `error:` line."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def small_embedding_checkpoint(path: Path) -> Path:
    """The shipped tiny teacher with 3000 embedding rows for its 4096-token tokenizer (the issue's case)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(ASSETS_DIR / "tiny", path)
    config = json.loads((path / "config.json").read_text())
    before, rows = config["vocab_size"], 3000
    config["vocab_size"] = rows
    (path / "config.json").write_text(json.dumps(config))
    tensors = load_file(path / "model.safetensors")
    tensors = {
        k: v[:rows].contiguous() if v.dim() == 2 and v.shape[0] == before else v for k, v in tensors.items()
    }
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


# A distill run of the tiny teacher into itself, with settings other than the defaults (as a run file sets).
DISTILL_SETTINGS = ["--seq-len", "32", "--batch-size", "2", "--eval-batches", "1", "--warmup-steps", "0",
                    "--save-every", "1", "--eval-every", "0", "--device", "cpu"]  # fmt: skip


def distill_argv(out: Path, steps: int = 2) -> list[str]:
    return ["distill", "tiny", "tiny", "--out", str(out), *DISTILL_SETTINGS, "--steps", str(steps)]


def last_step(run: Path) -> int:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return max(r["step"] for r in records)


def task_yaml(folder: Path, name: str, text_template: str) -> Path:
    """A local lm-eval multiple-choice task over three doubling items; `text_template` is its doc_to_text."""
    data = folder / f"{name}.jsonl"
    items = [{"q": f"{i} plus {i} is", "choices": [" a", " b"], "label": 0} for i in range(3)]
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    path = folder / f"{name}.yaml"
    path.write_text(
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        f'doc_to_text: "{text_template}"\ndoc_to_choice: "{{{{choices}}}}"\ndoc_to_target: "{{{{label}}}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    return path
