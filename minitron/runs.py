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


def differences(
    saved: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = (), deep: bool = False
) -> list[str]:
    """The keys (of either side, less `ignore`) whose values differ, sorted. `deep` walks into values
    that are dicts on both sides and names the inner key (`data.seq_len`), so a refusal names the one
    setting that differs rather than two whole dicts."""
    keys = (set(saved) | set(now)) - set(ignore)
    out = []
    for k in sorted(keys):
        old, new = _plain(saved.get(k)), _plain(now.get(k))
        if old == new:
            continue
        if deep and isinstance(old, dict) and isinstance(new, dict):
            out += [f"{k}.{inner}" for inner in differences(old, new, deep=True)]
        else:
            out.append(k)
    return out


def changes(saved: dict[str, Any], now: dict[str, Any], keys: list[str]) -> str:
    """`key: old -> new` for each of `keys` (dotted keys reach into nested dicts), values as JSON."""
    return ", ".join(f"{k}: {short_json(_at(saved, k))} -> {short_json(_at(now, k))}" for k in keys)


def _at(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


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
