"""Lazy reading of safetensors shards and streaming writing of pruned shards.

Memory model: a prune never holds a model. Each output tensor is assembled from row chunks read
with `safe_open(...).get_slice` (at most `READ_CHUNK_BYTES` of source rows at a time), written
straight into its shard file and freed. Shard layouts (names, shapes, offsets) are computed from
the source headers before any data is read, so a shard's header is written first and its tensors
streamed after it: peak memory is about one output tensor plus one read chunk.

Output directories are built in a temporary sibling directory and renamed into place at the end,
so an interrupted prune leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from minitron.atomic import make_temp_dir
from minitron.errors import MinitronError
from minitron.prune.slicing import pruned_shape, take

READ_CHUNK_BYTES = 64 * 2**20

# safetensors dtype codes <-> torch dtypes
ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_CODE = {v: k for k, v in ST_DTYPES.items()}

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


class SourceTensors:
    """The tensors of a safetensors checkpoint, read lazily (one get_slice window at a time)."""

    def __init__(self, files: list[Path]):
        from safetensors import safe_open

        self.file_of: dict[str, Path] = {}
        self.shape: dict[str, tuple[int, ...]] = {}
        self.dtype: dict[str, torch.dtype] = {}
        for file in files:
            try:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        sl = f.get_slice(key)
                        self.file_of[key] = file
                        self.shape[key] = tuple(sl.get_shape())
                        self.dtype[key] = ST_DTYPES[sl.get_dtype()]
            except Exception as e:  # safetensors raises its own error types for corrupt files
                raise MinitronError(f"{file}: not a readable safetensors file ({_first_line(e)})") from None

    def keys(self) -> list[str]:
        return list(self.file_of)

    def read(self, key: str, index: tuple[torch.Tensor | None, ...], dtype: torch.dtype) -> torch.Tensor:
        """Source tensor `key` restricted to `index` (one entry per dim, None = all), cast to `dtype`."""
        from safetensors import safe_open

        shape = self.shape[key]
        rows = torch.arange(shape[0]) if index[0] is None else index[0]
        out = torch.empty(pruned_shape(index, shape), dtype=dtype)
        row_bytes = max(1, _numel(shape[1:]) * _itemsize(self.dtype[key]))
        window = rows // max(1, READ_CHUNK_BYTES // row_bytes)  # source window of every kept row
        # Opened per tensor so the memory map (and its resident pages) is released right after.
        with safe_open(str(self.file_of[key]), framework="pt") as f:
            sl = f.get_slice(key)
            for w in torch.unique(window).tolist():
                at = (window == w).nonzero().squeeze(1)  # positions in `out` of this window's rows
                wanted = rows[at]
                lo = int(wanted.min())
                piece = sl[lo : int(wanted.max()) + 1]  # one read per window, at most READ_CHUNK_BYTES
                piece = piece.index_select(0, wanted - lo)
                for dim, i in enumerate(index[1:], start=1):
                    if i is not None:  # a per-row (2-D) index: the rows of this window
                        piece = take(piece, dim, i if i.ndim == 1 else i[at])
                out.index_copy_(0, at, piece.to(dtype))
        return out


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return _numel(self.shape) * _itemsize(self.dtype)


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[tuple[str, list[TensorSpec]]]:
    """Greedy split into shards of at most `max_shard_bytes` (a larger tensor gets a shard of its own)."""
    groups: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if groups[-1] and size + spec.nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(spec)
        size += spec.nbytes
    if len(groups) == 1:
        return [("model.safetensors", groups[0])]
    n = len(groups)
    return [(f"model-{k + 1:05d}-of-{n:05d}.safetensors", g) for k, g in enumerate(groups)]


def write_shard(
    path: Path, specs: list[TensorSpec], produce: Callable[[TensorSpec], torch.Tensor], on_tensor=None
) -> None:
    """Write a safetensors file whose tensors are produced one at a time (never all in memory)."""
    # Wider dtypes first keeps every tensor aligned to its item size, as safetensors itself does.
    specs = sorted(specs, key=lambda s: (-_itemsize(s.dtype), s.name))
    header: dict[str, object] = {}
    offset = 0
    for s in specs:
        header[s.name] = {
            "dtype": _ST_CODE[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [offset, offset + s.nbytes],
        }
        offset += s.nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for s in specs:
            t = produce(s)
            if tuple(t.shape) != s.shape or t.dtype != s.dtype:
                raise MinitronError(
                    f"internal error: {s.name} came out {tuple(t.shape)} {t.dtype}, planned {s.shape} {s.dtype}"
                )
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)
            if on_tensor is not None:
                on_tensor(s)
            del t


def write_index(directory: Path, shards: list[tuple[str, list[TensorSpec]]]) -> None:
    if len(shards) == 1:
        return
    index = {
        "metadata": {"total_size": sum(s.nbytes for _, group in shards for s in group)},
        "weight_map": {s.name: file for file, group in shards for s in sorted(group, key=lambda s: s.name)},
    }
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def check_output_dir(out: Path, source: Path | None, overwrite: bool) -> None:
    """Refuse to write into (or over) the source, or over a non-empty directory without --overwrite."""
    out_r = out.resolve()
    if source is not None:
        src_r = source.resolve()
        if out_r == src_r or src_r in out_r.parents or out_r in src_r.parents:
            raise MinitronError(
                f"--out {out} overlaps the source checkpoint {source}; choose another directory"
            )
    if out.exists() and not out.is_dir():
        raise MinitronError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MinitronError(f"--out {out} is not empty; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out`, on failure it is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = make_temp_dir(prefix=f".{out.name}.", suffix=".old", dir=out.parent)
        os.replace(out, old / "previous")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def copy_tokenizer_files(source: Path, dest: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)
            copied.append(name)
    return copied


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
