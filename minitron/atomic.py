"""Atomic file writes: nothing already written is ever half-overwritten.

Every output file is written to a temp file in the same directory and renamed over its target, so a
crash or Ctrl-C leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write to; renamed over `path` when the block succeeds, removed otherwise."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _readable_mode(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def _readable_mode(tmp: str | Path) -> None:
    """mkstemp creates 0600 files; give the published file the mode a plain open() would (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
