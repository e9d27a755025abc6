"""An --out that cannot be written (under a regular file, in /proc, an existing file for a directory)
is one line and a non-zero exit from every command that writes, before any work and without a
traceback; the check itself creates nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from minitron.atomic import check_writable
from minitron.cli import app
from minitron.errors import MinitronError

# Each command that writes, with what it needs besides --out (OUT is replaced by the output path).
COMMANDS = {
    "score": ["score", "tiny", "--out", "OUT/scores.safetensors"],
    "search": ["search", "tiny", "--budget", "20MiB", "--out", "OUT"],
    "prune": ["prune", "tiny", "--layers", "50", "--out", "OUT"],
    "distill": ["distill", "tiny", "tiny", "--out", "OUT"],
    "train": ["train", "tiny", "--out", "OUT"],
    "compare": ["compare", "tiny", "candidates.json", "--out", "OUT"],
    "evaluate": ["evaluate", "tiny", "--tasks", "hellaswag", "--out", "OUT"],
    "estimate": ["estimate", "tiny", "--out", "OUT/estimate.json"],
    "run": ["run", "RUNFILE", "--out", "OUT"],
    "demo": ["demo", "--out", "OUT"],
}


@pytest.fixture
def blocker(tmp_path):
    path = tmp_path / "afile.txt"
    path.write_text("kept")
    return path


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unwritable_out_is_one_line_before_any_work(tmp_path, blocker, command, where):
    run_file = tmp_path / "run.toml"
    run_file.write_text('teacher = "tiny"\n[search]\nbudget = "20MiB"\n')
    out = str(blocker / "x") if where == "under a file" else "/proc/minitron-out"
    argv = [w.replace("OUT", out).replace("RUNFILE", str(run_file)) for w in COMMANDS[command]]
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and "Traceback" not in result.output, (
        result.output
    )
    assert (f"{blocker} is a file" if where == "under a file" else "/proc") in lines[0]
    assert sorted(tmp_path.rglob("*")) == before and blocker.read_text() == "kept"


@pytest.mark.parametrize("command", ["distill", "train", "search", "prune", "compare", "evaluate"])
def test_an_existing_file_as_an_output_directory_is_one_line(blocker, command):
    argv = [w.replace("OUT", str(blocker)) for w in COMMANDS[command]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"error: --out {blocker} exists and is not a directory"]
    assert blocker.read_text() == "kept"


def test_check_writable_creates_nothing_and_names_the_flag(tmp_path, blocker):
    deep = tmp_path / "a" / "b" / "c"
    assert check_writable(deep) == deep and not (tmp_path / "a").exists()
    assert check_writable(deep / "f.json", file=True) == deep / "f.json" and not (tmp_path / "a").exists()
    with pytest.raises(MinitronError, match=r"^--scores-out: .*afile.txt is a file, not a directory\)$"):
        check_writable(blocker / "x" / "y", "--scores-out")
    with pytest.raises(MinitronError, match="is a directory; give a file name"):
        check_writable(tmp_path, file=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]
