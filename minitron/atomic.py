"""Atomic file writes: nothing already written is ever half-overwritten.

Every output file is written to a temp file in the same directory and renamed over its target, so a
crash or Ctrl-C leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError


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


def write_png(path: str | Path, fig, dpi: int = 110) -> Path:
    """Save a matplotlib figure (laid out tight) and close it, even when saving fails."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return Path(path)


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """Standard JSON (indent 2): inf and nan, which JSON cannot hold, are written as null."""
    return json.dumps(_finite(data), indent=2, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    return write_text(path, json_text(data, sort_keys=sort_keys) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _readable_mode(tmp: str | Path) -> None:
    """mkstemp creates 0600 files; give the published file the mode a plain open() would (0666 - umask)."""
    os.chmod(tmp, 0o666 & ~_umask())


def make_temp_dir(prefix: str, suffix: str = "", dir: str | Path | None = None) -> Path:
    """A new temp directory with the mode a plain mkdir would give (0777 - umask), not mkdtemp's 0700:
    it becomes a published output directory once renamed."""
    path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dir))
    os.chmod(path, 0o777 & ~_umask())
    return path


@contextmanager
def replace_dir(tmp: Path, final: Path) -> Iterator[Path]:
    """Fill the temp directory `tmp` in the block; it then replaces `final` (removed on any failure)."""
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(path: str | Path, flag: str = "--out", *, file: bool = False, what: str = "") -> Path:
    """Refuse an output that cannot be written, before any work and without creating anything.

    `path` is an output directory (or, with `file`, an output file whose directory is created as
    needed). Refused: a directory output that is an existing file (or the reverse), a path under a
    regular file, and a directory where nothing can be written (read-only, /proc). The nearest
    existing ancestor is probed with an anonymous temp file, so root's permission bypass and virtual
    file systems are caught as well.
    """
    path = Path(path).expanduser()
    what = what or ("file" if file else "directory")
    if not file and path.exists() and not path.is_dir():
        raise MinitronError(f"{flag} {path} exists and is not a directory")
    if file and path.is_dir():
        raise MinitronError(f"{flag} {path} is a directory; give a file name")
    existing = path.parent if file else path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MinitronError(f"{flag}: cannot create {what} {path} ({existing} is a file, not a directory)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise MinitronError(f"{flag}: cannot write {what} {path} ({existing}: {e.strerror})") from None
    return path
