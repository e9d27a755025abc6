"""The model card (README.md with Hub metadata) of every checkpoint minitron writes.

A Hub page shows a checkpoint's README.md: YAML metadata (`base_model`, `library_name:
transformers`, `pipeline_tag: text-generation`, tags, the teacher's licence) and a body with the
architecture before and after (one row per axis and block count), the parameters, the serving
memory at the searched context when the search gave it, the command lines that made the model and,
after training, the held-out losses before and after. Everything comes from the provenance records
(minitron.json) the writers already keep, so the card says nothing they do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CARD_FILE = "README.md"


LICENCE_KEYS = (
    "license",
    "license_name",
    "license_link",
)  # `license: other` names its licence in the other two


def licence_of(checkpoint: str | Path | None) -> dict[str, str]:
    """The licence a checkpoint declares in its own card's metadata (`license:` and, for `other`, its
    name and link); empty when it declares none."""
    from huggingface_hub import metadata_load

    path = Path(checkpoint) / CARD_FILE if checkpoint else None
    if path is None or not path.is_file():
        return {}
    try:
        metadata = metadata_load(path) or {}
    except Exception:  # a README without valid YAML metadata declares nothing
        return {}
    if not metadata.get("license"):
        return {}
    return {k: str(metadata[k]) for k in LICENCE_KEYS if metadata.get(k)}


def model_card(
    *,
    title: str,
    stage: str,
    base_model: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    commands: list[str],
    serving: dict[str, Any] | None = None,
    heldout: tuple[dict[str, float] | None, dict[str, float] | None] | None = None,
    licence: dict[str, str] | None = None,
    datasets: list[str] | None = None,
) -> str:
    """README.md text. `before`/`after` are `Architecture.summary()` dicts (the teacher's and this
    model's); `serving` is the search's memory record (total bytes, context, batch, dtype);
    `heldout` the held-out figures at step 0 and at the end of training."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=base_model, library_name="transformers", pipeline_tag="text-generation",
        tags=["minitron", stage], datasets=datasets or None, **(licence or {}),
    )  # fmt: skip
    lines = [f"# {title}", "", _intro(stage, base_model), ""]
    lines += ["## Architecture", "", *_architecture_table(before, after), ""]
    teacher_params = f" (teacher: {before['params']:,})" if before and "params" in before else ""
    lines += [f"Parameters: {after['params']:,}{teacher_params}", ""]
    if "active_params" in after:  # mixture of experts: what one token passes through
        teacher_active = (
            f" (teacher: {before['active_params']:,})" if before and "active_params" in before else ""
        )
        lines += [f"Active parameters per token: {after['active_params']:,}{teacher_active}", ""]
    if serving:
        lines += ["## Serving memory", "", *_serving_lines(serving), ""]
    if heldout and (heldout[0] or heldout[1]):
        lines += ["## Held-out losses", "", *_heldout_table(*heldout), ""]
    lines += ["## How it was made", ""]
    lines += ["```", *commands, "```"] if commands else ["The command line was not recorded."]
    lines += ["", "`minitron.json` holds the full provenance: source fingerprint, scores hash, settings.", ""]
    if licence:
        name = licence["license"] + (f" ({licence['license_name']})" if "license_name" in licence else "")
        link = f" ({licence['license_link']})" if "license_link" in licence else ""
        lines += ["## Licence", "",
                  f"The teacher{f' `{base_model}`' if base_model else ''} is released under {name}{link}; this "
                  "model is derived from its weights, so the teacher's licence terms carry over.", ""]  # fmt: skip
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _intro(stage: str, base_model: str | None) -> str:
    source = f"`{base_model}`" if base_model else "its source model"
    return {
        "pruned": f"Pruned from {source} with minitron (Minitron-style structured pruning: importance scores, "
        "then slicing). A pruned model usually needs distillation before use.",
        "distilled": f"Distilled from {source} with minitron: the student is trained on the teacher's logits.",
    }.get(stage, f"Trained from {source} with minitron.")


def _architecture_table(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """One row per axis and block count of the summary; rows the family lacks (zero on both sides) left out."""
    keys = [k for k, v in after.items() if isinstance(v, int) and not isinstance(v, bool)]
    if before is None:
        rows = ["| | this model |", "|---|---:|"]
        return rows + [f"| {k} | {after[k]:,} |" for k in keys if after[k]]
    rows = ["| | teacher | this model | kept |", "|---|---:|---:|---:|"]
    for key in keys:
        a, b = before.get(key), after[key]
        if not a and not b:
            continue
        kept = f"{b / a:.1%}" if isinstance(a, int) and a else "-"
        rows.append(f"| {key} | {'-' if a is None else f'{a:,}'} | {b:,} | {kept} |")
    return rows


def _serving_lines(serving: dict[str, Any]) -> list[str]:
    from minitron.units import format_bytes

    terms = [("weights", "weights_bytes"), ("KV cache", "kv_cache_bytes"), ("SSM state", "ssm_state_bytes"),
             ("conv state", "conv_state_bytes")]  # fmt: skip
    where = ", ".join(
        f"{label} {serving[key]}" for label, key in (("context", "context_tokens"), ("batch", "batch"),
                                                     ("weights in", "weight_dtype")) if serving.get(key) is not None
    )  # fmt: skip
    lines = [f"{format_bytes(serving['total_bytes'])} ({serving['total_bytes']:,} bytes) at {where}, "
             "as the search estimated it:", "", "| term | bytes |", "|---|---:|"]  # fmt: skip
    lines += [f"| {label} | {serving[key]:,} |" for label, key in terms if serving.get(key)]
    return lines


def _heldout_table(before: dict[str, float] | None, after: dict[str, float] | None) -> list[str]:
    keys = [k for k in (after or before or {}) if k.startswith("eval_")]
    rows = ["| held-out (nats / token) | before training | after training |", "|---|---:|---:|"]
    for key in keys:
        cells = ["-" if not r or key not in r else f"{r[key]:.4f}" for r in (before, after)]
        rows.append(f"| {key.removeprefix('eval_')} | {cells[0]} | {cells[1]} |")
    return rows
