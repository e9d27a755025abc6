"""The model card of a trained or distilled model, from the minitron.json its run writes beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minitron.model.card import CARD_FILE, licence_of, model_card


def write_run_card(final: Path, title: str) -> Path:
    """README.md in `final` (a directory being assembled) from its minitron.json."""
    from minitron.atomic import write_text

    record = json.loads((final / "minitron.json").read_text())
    provenance = record.get("provenance") or {}
    teacher = provenance.get("teacher")
    student = provenance.get("student_source") or record["model"]
    base = teacher or student
    pruned = _pruned_record(student.get("path"))
    command = json.loads((final / "train_config.json").read_text())["config"].get("command")
    commands = [c for c in (pruned.get("command"), command) if c]
    data = record.get("data") or {}
    text = model_card(
        title=title,
        stage="distilled" if teacher else "trained",
        base_model=base.get("model") if base.get("model") != "in-memory" else None,
        before=_sizes(teacher) if teacher else None,
        after=_sizes(student) or _sizes(record["model"]),
        commands=commands,
        serving=pruned.get("serving"),
        heldout=(record.get("heldout_before"), record.get("heldout_after")),
        licence=licence_of(base.get("path")),
        datasets=[data["dataset"]] if data.get("kind") == "hub" else None,
    )
    return write_text(final / CARD_FILE, text)


def _sizes(info: dict[str, Any]) -> dict[str, Any]:
    """The architecture figures of a provenance entry (it also holds names, paths and fingerprints)."""
    return {k: v for k, v in info.items() if isinstance(v, int) and not isinstance(v, bool)}


def _pruned_record(path: str | None) -> dict[str, Any]:
    """The minitron.json of a student that `minitron prune` wrote (its command, its serving memory)."""
    record = Path(path) / "minitron.json" if path else None
    if record is None or not record.is_file():
        return {}
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
