"""The `minitron` command: a thin typer app.

Every command parses options, builds a config dataclass and calls one library function. Heavy
imports (torch, transformers) happen inside the commands, so `minitron --help` stays fast.
User errors (`MinitronError`) print one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

app = typer.Typer(
    name="minitron",
    help="Compress language models the Minitron way: score, search under a memory budget, prune, distill.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., object])


def friendly(fn: F) -> F:
    """Turn MinitronError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from minitron.errors import MinitronError

        try:
            return fn(*args, **kwargs)
        except MinitronError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from minitron import __version__

        typer.echo(f"minitron {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Compress language models the Minitron way."""


def main() -> None:
    app(prog_name="minitron")


if __name__ == "__main__":
    sys.exit(main())
