"""`--help` of the app and of every command registered on it, found from the typer app itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from minitron import __version__
from minitron.cli import app


def command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command path, e.g. [('estimate',), ('prune',)], groups included.

    Duck-typed on `.commands`: typer ships its own copy of click, so click.Group is not its base.
    """
    paths = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.append((*prefix, name))
        paths.extend(command_paths(sub, (*prefix, name)))
    return paths


ROOT = typer.main.get_command(app)
COMMANDS = command_paths(ROOT)


def find(path: tuple[str, ...]):
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


def test_root_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    for path in COMMANDS:
        assert path[-1] in result.stdout


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"minitron {__version__}"


def test_estimate_is_registered():
    assert ("estimate",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_help_shows_every_option(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and " ".join(path) in result.stdout
    for param in find(path).params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.opts[0] in result.stdout, f"{param.opts[0]} missing from `{' '.join(path)} --help`"


def test_help_never_imports_torch():
    """`minitron --help` and every `minitron CMD --help` stay light: no torch, no transformers."""
    script = textwrap.dedent(
        """
        import sys
        import typer
        from typer.testing import CliRunner
        from minitron.cli import app

        def paths(command, prefix=()):
            for name, sub in getattr(command, "commands", {}).items():
                yield (*prefix, name)
                yield from paths(sub, (*prefix, name))

        all_paths = [(), *paths(typer.main.get_command(app))]
        for path in all_paths:
            result = CliRunner().invoke(app, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output)
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print(len(all_paths), heavy)
        assert not heavy, heavy
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[0] == str(len(COMMANDS) + 1)


def test_dash_h_is_help():
    for args in (["-h"], ["estimate", "-h"], ["prune", "-h"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "Usage:" in result.stdout, args


def test_commands_are_listed_in_workflow_order():
    from minitron.cli_app import WORKFLOW

    out = CliRunner().invoke(app, ["--help"]).stdout
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]
    known = [name for name in WORKFLOW if name in listed]
    assert listed[: len(known)] == known and known[:4] == ["run", "demo", "estimate", "score"]


def test_flags_show_as_flags_and_defaults_in_help_stay_text():
    out = CliRunner().invoke(app, ["estimate", "--help"], env={"COLUMNS": "200"}).stdout
    json_line = next(line for line in out.splitlines() if line.strip().startswith("--json"))
    assert "<bool>" not in json_line and "BOOLEAN" not in json_line
    flat = " ".join(out.split())  # help is wrapped
    assert "(default: the compute dtype" in flat and "(default: float32 for transformers" in flat
    score = " ".join(CliRunner().invoke(app, ["score", "--help"]).stdout.split())
    assert "(default: .txt .md .rst .py .jsonl .parquet files, recursively)" in score


@pytest.mark.parametrize(
    "path", [p for p in COMMANDS if any("--json" in q.opts for q in find(p).params)], ids=" ".join
)
def test_json_is_a_flag_everywhere(path):
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).stdout
    json_line = next(line for line in out.splitlines() if line.strip().startswith("--json"))
    assert json_line.split()[1][0] not in "<[" and "BOOLEAN" not in json_line, json_line


def test_search_defaults_in_help_stay_text():
    flat = " ".join(CliRunner().invoke(app, ["search", "--help"]).stdout.split())
    # estimate and search share one help text per serving option (ServingSpec)
    assert "KV cache dtype (default: the compute dtype" in flat
    assert "[search's default: a10g]" in flat and "[default: the source size]" in flat
