"""Resolve a model argument (a checkpoint directory or a built-in name) and load it.

A model argument is either a local Hugging Face checkpoint directory (config.json plus safetensors
shards, tokenizer files if present) or a built-in name: config-only presets of public models
(their configs are facts; their weights are not shipped) and `tiny` / `tiny-moe`, small trained
checkpoints shipped inside the package.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import struct
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError, read_json
from minitron.model.adapters import adapter_for
from minitron.model.arch import Architecture
from minitron.runs import digest

PRESET_DIR = Path(str(resources.files("minitron.model") / "presets"))
ASSETS_DIR = Path(str(resources.files("minitron"))) / "assets"
BUILTIN_CHECKPOINTS = {"tiny": ASSETS_DIR / "tiny", "tiny-moe": ASSETS_DIR / "tiny-moe"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def builtin_names() -> list[str]:
    return sorted([*preset_names(), *BUILTIN_CHECKPOINTS])


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: its config, and its checkpoint directory when it has weights."""

    name: str
    config: dict[str, Any]
    path: Path | None = None

    @property
    def has_weights(self) -> bool:
        return self.path is not None

    @cached_property
    def architecture(self) -> Architecture:
        return Architecture.from_hf_config(self.config)

    def require_weights(self, command: str) -> Path:
        if self.path is None:
            raise MinitronError(
                f"'{self.name}' is a config-only preset (weights are not shipped); "
                f"`{command}` needs a local checkpoint directory"
            )
        return self.path

    def safetensors_files(self) -> list[Path]:
        path = self.require_weights("loading weights")
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise MinitronError(
                f"{path}: no *.safetensors weights found (only safetensors checkpoints are supported)"
            )
        return files

    def fingerprint(self) -> str:
        """A short stable id of the weights: safetensors headers plus sampled data bytes of every shard.

        Reading whole multi-GB shards would dominate start-up; headers fix names, shapes, dtypes and
        offsets, and three 64 KiB samples per shard catch retrained weights of the same shape.
        """
        if self.path is None:
            return "config:" + digest(self.config, 16)
        h = hashlib.sha256()
        for file in self.safetensors_files():
            size = file.stat().st_size
            with open(file, "rb") as f:
                header_len = _read_header_len(f, file)
                h.update(f.read(header_len))
                data_start = 8 + header_len
                for offset in (data_start, (data_start + size) // 2, max(data_start, size - 65536)):
                    f.seek(offset)
                    h.update(f.read(65536))
            h.update(str(size).encode())
        return h.hexdigest()[:16]


def _read_header_len(f, file: Path) -> int:
    raw = f.read(8)
    if len(raw) != 8:
        raise MinitronError(f"{file}: truncated safetensors file")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len > 100_000_000:
        raise MinitronError(f"{file}: corrupt safetensors header")
    return header_len


def resolve_model(spec: str | Path) -> ModelSource:
    """A ModelSource for a directory path or a built-in name; one clear error otherwise."""
    text = str(spec)
    path = Path(text).expanduser()
    if text in BUILTIN_CHECKPOINTS and not path.exists():
        path = BUILTIN_CHECKPOINTS[text]
        if not (path / "config.json").exists():
            raise MinitronError(f"built-in checkpoint '{text}' is missing from this installation ({path})")
        return ModelSource(name=text, config=_read_config(path), path=path)
    if path.is_dir():
        return ModelSource(name=text, config=_read_config(path), path=path)
    preset = PRESET_DIR / f"{text.lower()}.json"
    if preset.exists() and "/" not in text:
        return ModelSource(name=text.lower(), config=json.loads(preset.read_text()))
    if path.exists():
        raise MinitronError(f"{text}: not a directory; pass a Hugging Face checkpoint directory")
    looks_like_path = "/" in text or text.startswith(".")
    if looks_like_path:
        raise MinitronError(f"{text}: no such directory")
    # A name the user started typing beats difflib's ratio ('nemotron-nano-12b' -> the 12B, not the 9B).
    close = [name for name in builtin_names() if name.startswith(text.lower())]
    close += [
        n for n in difflib.get_close_matches(text.lower(), builtin_names(), n=3, cutoff=0.4) if n not in close
    ]
    close = close[:3]
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; built-in models: {', '.join(builtin_names())}"
    )
    raise MinitronError(f"unknown model '{text}' (not a directory or built-in name){hint}")


def _read_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.exists():
        raise MinitronError(f"{path}: no config.json (not a Hugging Face checkpoint directory)")
    config = read_json(config_file)
    if not isinstance(config, dict) or "model_type" not in config:
        raise MinitronError(f"{config_file}: has no model_type")
    Architecture.from_hf_config(config)  # rejects unsupported architectures early, with the list
    return config


def load_model(
    source: ModelSource, dtype: str = "float32", device: str = "cpu", command: str = "this command"
):
    """The transformers model of a checkpoint source, in eval mode."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    path = source.require_weights(command)
    source.safetensors_files()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a small bar per load; minitron shows its own progress
    try:
        # No device_map: in transformers 5.x any device_map needs `accelerate`, which we do not require.
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MinitronError(f"{path}: cannot load checkpoint ({first_line})") from None
    adapter_for(model).after_load(model)
    return model.to(device).eval()


def load_tokenizer(source: ModelSource, command: str = "this command"):
    from transformers import AutoTokenizer

    path = source.require_weights(command)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MinitronError(f"{path}: no usable tokenizer ({str(e).strip().splitlines()[0]})") from None
    rows = source.architecture.vocab
    if len(tokenizer) > rows:
        # Token ids past the embedding would index out of range mid-run (or be scored as garbage).
        raise MinitronError(
            f"{path}: the tokenizer has {len(tokenizer):,} tokens but the embedding only {rows:,} rows "
            f"(config vocab_size); ids {rows:,} and above have no embedding"
        )
    return tokenizer


def check_seq_len(seq_len: int, config: dict[str, Any], name: str) -> None:
    """Refuse a --seq-len past the model's positions before any text is read for it (packing a corpus
    into 10^8-token sequences would take minutes only to find too little text)."""
    limit = config.get("max_position_embeddings")
    if isinstance(limit, int) and seq_len > limit:
        raise MinitronError(f"--seq-len {seq_len:,} is above {name}'s max_position_embeddings {limit:,}")


def build_model(arch: Architecture, dtype: str = "float32", device: str = "cpu", seed: int | None = None):
    """A randomly initialised transformers model of `arch` (device 'meta' allocates nothing)."""
    import torch
    from transformers import AutoModelForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    config = arch.to_hf_config()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    if device != "meta":
        adapter_for(model).after_load(model)
    return model.eval()
