"""Hugging Face Hub datasets by name: `--data hf:NAME[:CONFIG][@SPLIT]`, streamed with `datasets`.

`hf:HuggingFaceFW/fineweb-edu:sample-10BT@train` is `datasets.load_dataset("HuggingFaceFW/fineweb-edu",
"sample-10BT", split="train", streaming=True)`; a local directory laid out as a Hub dataset repository
(data files and a README.md dataset card naming them) goes through the same call: `hf:/path/to/repo`.
A stream's position is the IterableDataset's own `state_dict()` (shard and row), so a resumed stream
restarts there instead of reading what was consumed again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from minitron.errors import MinitronError

HUB_PREFIX = "hf:"


def is_hub(source: str) -> bool:
    return source.startswith(HUB_PREFIX)


def hub_dataset(source: str) -> tuple[str, str | None, str]:
    """`hf:NAME[:CONFIG][@SPLIT]` -> (name, config or None, split; `train` by default)."""
    rest, at, split = source.removeprefix(HUB_PREFIX).partition("@")
    name, colon, config = rest.partition(":")
    if not name or (colon and not config) or (at and not split):
        raise MinitronError(
            f"--data {source}: expected hf:NAME[:CONFIG][@SPLIT], e.g. hf:HuggingFaceFW/fineweb-edu:sample-10BT@train"
        )
    return name, config or None, split or "train"


def check_hub_source(source: str) -> None:
    """A well-formed name and the `datasets` library: checked before any work (the Hub is reached later)."""
    hub_dataset(source)
    _datasets(source)


def describe_hub(source: str) -> dict[str, Any]:
    name, config, split = hub_dataset(source)
    return {"kind": "hub", "dataset": name, "config": config, "hub_split": split}


def hub_documents(source: str, text_field: str, state: dict[str, Any] | None) -> Iterator[tuple[str, dict]]:
    """Every document of the streamed dataset from `state` on (None: the start), each with the stream's
    state just after it."""
    datasets = _datasets(source)
    name, config, split = hub_dataset(source)
    try:
        stream = datasets.load_dataset(name, config, split=split, streaming=True)
    except ConnectionError:
        offline = "1" if datasets.config.HF_DATASETS_OFFLINE else "0"
        raise MinitronError(
            f"--data {source}: cannot reach the Hub and the dataset is not in the cache "
            f"{datasets.config.HF_DATASETS_CACHE} (HF_DATASETS_OFFLINE={offline}); connect once, or pass a local copy"
        ) from None
    except Exception as e:  # datasets raises many types: not found, gated, bad config or split
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinitronError(f"--data {source}: {first}") from None
    if stream.column_names is not None and text_field not in stream.column_names:
        raise MinitronError(
            f"--data {source}: no column '{text_field}' (has {stream.column_names}; set --text-field)"
        )
    if state is not None:
        stream.load_state_dict(state)
    for record in stream:
        text = record.get(text_field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise MinitronError(f"--data {source}: column '{text_field}' is not text")
        yield text, stream.state_dict()


def _datasets(source: str):
    try:
        import datasets
    except ImportError:
        raise MinitronError(
            f"--data {source}: reading Hub datasets needs datasets: pip install 'minitron[data]'"
        ) from None
    return datasets
