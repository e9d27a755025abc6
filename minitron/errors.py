"""The one exception type users see: the CLI prints its message as a single line and exits 1; and the
checks of a file the user names (a run file, a candidates file, a scores file, a config.json), which
raise it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MinitronError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def input_file(path: str | Path, kind: str, made_by: str) -> Path:
    """`path` if it is a file; else why not: `kind` names the file ("scores file"), `made_by` says
    what a right one is ("the .safetensors of `minitron score`")."""
    path = Path(path)
    if path.is_dir():
        raise MinitronError(f"{path}: is a directory, not a {kind} ({made_by})")
    if not path.is_file():
        raise MinitronError(f"{path}: no such {kind}")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MinitronError(f"{path}: not valid JSON ({e})") from None


def check_choice(flag: str, value: Any, choices) -> None:
    """One line naming `flag` and its choices when `value` is not among them."""
    if value not in choices:
        raise MinitronError(f"{flag} must be one of {', '.join(map(str, choices))}, got {value!r}")


def preset(table: dict[str, Any], name: str, flag: str, kind: str) -> Any:
    """`table[name]` (any case), else one line naming `flag` and the known names."""
    value = table.get(str(name).lower())
    if value is None:
        raise MinitronError(f"{flag}: unknown {kind} {name!r}; known: {', '.join(table)}")
    return value
