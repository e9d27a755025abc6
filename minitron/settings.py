"""Which settings differ between a saved run and the command continuing it, named one by one."""

from __future__ import annotations

import json
from typing import Any


def differences(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """['data.seq_len: 128 -> 256', ...]: nested dicts are walked, so a refusal names the one setting that
    differs rather than printing both whole dicts."""
    out = []
    for key in sorted(set(before) | set(now), key=str):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(differences(old, new, f"{name}."))
        else:
            out.append(f"{name}: {_short(old)} -> {_short(new)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
