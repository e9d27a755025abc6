"""A run's identity: what its outputs depend on, as one hash, and whether a directory holds the same run.

Every command that writes a run continues it when it is asked for again with the same inputs: train
and distill from their checkpoints (minitron.distill.rundir), compare from its candidates' runs,
search from its Optuna study, `minitron run` stage by stage. They all describe their inputs as a
JSON-able dict of settings and content hashes, compare two descriptions with `differences`, and hash
with `digest` / `file_digest`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError


def digest(value: Any, length: int = 64) -> str:
    """SHA-256 (hex, first `length` digits) of a JSON-able value, keys sorted: equal settings, equal digest."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_digest(path: str | Path, length: int = 64) -> str:
    """SHA-256 (hex, first `length` digits) of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def differences(saved: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The keys (of either side, less `ignore`) whose values differ, sorted."""
    keys = (set(saved) | set(now)) - set(ignore)
    return sorted(k for k in keys if _plain(saved.get(k)) != _plain(now.get(k)))


def changes(saved: dict[str, Any], now: dict[str, Any], keys: list[str]) -> str:
    """`key: old -> new` for each of `keys`, values as JSON."""
    return ", ".join(f"{k}: {short_json(saved.get(k), None)} -> {short_json(now.get(k), None)}" for k in keys)


def claim(out: Path, file: str, settings: dict[str, Any], what: str) -> bool:
    """Start a run in `out` (writing `settings` to `out/file`), or continue the one there if it has the
    same settings; False when it starts, True when it continues. Another run there is an error."""
    from minitron.atomic import write_json

    path = out / file
    if path.exists():
        saved = json.loads(path.read_text())
        changed = differences(saved, settings)
        if changed:
            raise MinitronError(
                f"--out {out} holds a {what} with other settings ({', '.join(changed)}); use another --out"
            )
        return True
    if out.exists() and any(out.iterdir()):
        raise MinitronError(f"--out {out} is not empty and holds no {what}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, settings)
    return False


def _plain(value: Any) -> Any:
    """The value as JSON holds it (tuples as lists), so a saved and a live description compare equal."""
    return json.loads(json.dumps(value, default=str))


def short_json(value: Any, width: int | None = 60) -> str:
    """A value as JSON, cut to `width` characters (None: whole) for an error line."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if width is None or len(text) <= width else text[: width - 3] + "..."
