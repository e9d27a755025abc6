"""The typer app the `minitron` commands hang on: commands listed in workflow order, `--version`,
and `friendly`, which turns a user error into one line (and says when torch is loading).

Only typer and rich here: `minitron --help` imports this module and must not import torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer

F = TypeVar("F", bound=Callable[..., object])

# The order a user runs them in; commands not named here follow, alphabetically.
WORKFLOW = ("run", "demo", "estimate", "score", "search", "prune", "distill", "compare", "evaluate", "train")

# Commands that run a model: importing torch and transformers takes seconds, said from the first one.
TORCH_COMMANDS = {
    "score",
    "search",
    "prune",
    "train",
    "distill",
    "compare",
    "evaluate",
    "run_command",
    "demo",
}


class WorkflowGroup(typer.core.TyperGroup):
    """Lists the commands in workflow order rather than in the order they are defined."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return [n for n in WORKFLOW if n in names] + sorted(n for n in names if n not in WORKFLOW)


def _version(value: bool) -> None:
    if value:
        from minitron import __version__

        typer.echo(f"minitron {__version__}")
        raise typer.Exit()


def make_app() -> typer.Typer:
    app = typer.Typer(
        name="minitron",
        help="Compress language models the Minitron way: score, search under a memory budget, prune, distill.",
        cls=WorkflowGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: flags show as flags (no "<bool>"), and "[default: ...]" in a help text stays text.
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Compress language models the Minitron way."""

    return app


def import_torch(command: str, console=None) -> None:
    """A spinner on a terminal while torch loads (logs and pipes get nothing: no line to parse around)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if not console.is_terminal:
        return
    with console.status(f"minitron {command.removesuffix('_command')}: loading torch and transformers"):
        import torch  # noqa: F401
        import transformers  # noqa: F401


def friendly(fn: F) -> F:
    """Turn MinitronError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from minitron.errors import MinitronError

        try:
            if fn.__name__ in TORCH_COMMANDS:
                import_torch(fn.__name__)
            return fn(*args, **kwargs)
        except MinitronError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            typer.echo(f"interrupted: {e}" if str(e) else "interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
