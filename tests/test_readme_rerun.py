"""The README's tiny-teacher commands, read from the README itself, run twice in a row: the second
run works on the first one's outputs (score replaces its file, prune its directory, distill and
train continue their own run) instead of failing on them. Sizes are shrunk by options appended
after the README's (the last value of an option wins)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from minitron.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = {
    "score": ["--samples", "4", "--seq-len", "32", "--batch-size", "4", "--json"],
    "prune": [],
    "distill": ["--steps", "2", "--seq-len", "32", "--batch-size", "2", "--eval-batches", "1",
                "--warmup-steps", "1", "--device", "cpu"],
}  # fmt: skip


def readme_commands() -> list[list[str]]:
    """`minitron score|prune|distill tiny ...` lines of the README's bash blocks, in README order."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [
        shlex.split(line)[1:] for line in lines if re.match(r"minitron (score|prune|distill) tiny ", line)
    ]


def test_readme_has_the_tiny_chain():
    assert [args[0] for args in readme_commands()] == ["score", "prune", "distill"]


def test_readme_commands_run_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's relative runs/ paths land here
    for round_ in (1, 2):
        for args in readme_commands():
            result = CliRunner().invoke(app, [*args, *SMALL[args[0]]])
            assert result.exit_code == 0, f"round {round_}: minitron {' '.join(args)}\n{result.output}"
    assert (tmp_path / "runs" / "kd" / "final" / "config.json").exists()
