"""Text -> tokens -> packed batches, and the built-in corpus.

A data source (`DataSpec.source`) is one of:

- `builtin`: a fixed snapshot of Python standard-library sources shipped in
  minitron/assets/corpus/ (PSF licence alongside), so results do not depend on the local Python;
- a text file (`.txt`, `.md`, `.py`, ...): the whole file is one document;
- a JSONL file (`.jsonl`, `.json`): one document per line, text in `text_field`;
  text and JSONL files may be compressed (`.gz`, `.xz`);
- a Parquet file (`.parquet`): one document per row, text in column `text_field`;
- a directory saved by `datasets.save_to_disk` (its Arrow files are read with pyarrow; for a
  DatasetDict, its `train` split);
- any other directory: every file matching `glob` (comma-separated patterns, searched recursively),
  each read by its own kind, in sorted path order.

Documents are split into train / held-out by the SHA-256 of their text, so the split is the same on
every run and machine and a document never lands on both sides. Each document is tokenised with the
model's tokenizer, followed by EOS, and the token stream is cut into `seq_len` sequences (a sequence
may span documents; the incomplete tail is dropped). Sequences pass through a bounded shuffle buffer
seeded by `seed`, so memory stays flat however large the corpus is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError

BUILTIN = "builtin"
BUILTIN_CORPUS = Path(str(resources.files("minitron"))) / "assets" / "corpus" / "python-stdlib.jsonl.xz"
DEFAULT_GLOB = "**/*.txt,**/*.md,**/*.rst,**/*.py,**/*.jsonl,**/*.parquet"
SPLITS = ("train", "heldout")

JSONL_SUFFIXES = (".jsonl", ".json")
COMPRESSED = {".gz": gzip.open, ".xz": lzma.open}  # read transparently: data.jsonl.gz, notes.txt.xz
PARQUET_SUFFIXES = (".parquet",)
# Sequences held for shuffling: 2048 x seq_len 256 int64 = 4 MiB; mixes neighbouring documents.
SHUFFLE_SEQUENCES = 2048
# Documents tokenised per tokenizer call (fast tokenizers parallelise inside one batch call).
TOKENIZE_DOCS = 64


@dataclass(frozen=True)
class DataSpec:
    """Which text, cut how: everything `token_batches` needs to produce the same batches again."""

    source: str = BUILTIN
    text_field: str = "text"
    glob: str = DEFAULT_GLOB
    seq_len: int = 256
    batch_size: int = 8
    samples: int | None = None  # packed sequences to produce; None = all
    split: str = "train"
    heldout_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.source:
            raise MinitronError("--data must name a file, a directory or 'builtin'")
        if self.seq_len < 2:
            raise MinitronError(f"--seq-len must be at least 2, got {self.seq_len}")
        if self.batch_size < 1:
            raise MinitronError(f"--batch-size must be positive, got {self.batch_size}")
        if self.samples is not None and self.samples < 1:
            raise MinitronError(f"--samples must be positive, got {self.samples}")
        if self.split not in SPLITS:
            raise MinitronError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise MinitronError(f"--heldout-fraction must be in (0, 1), got {self.heldout_fraction}")
        if not self.text_field:
            raise MinitronError("--text-field must not be empty")


def is_heldout(text: str, fraction: float) -> bool:
    """Held-out membership from the document's own bytes: stable across runs, machines and order."""
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return h < fraction * 2**64


def documents(spec: DataSpec) -> Iterator[str]:
    """Every non-empty document of the spec's split, streamed in a fixed order."""
    want_heldout = spec.split == "heldout"
    for text in _all_documents(spec):
        if text.strip() and is_heldout(text, spec.heldout_fraction) == want_heldout:
            yield text


def token_batches(spec: DataSpec, tokenizer) -> Iterator[Any]:
    """(batch_size, seq_len) int64 tensors of packed token ids; the same batches for the same spec.

    The last batch may hold fewer sequences; sequences are never padded.
    """
    import torch

    batch: list[list[int]] = []
    produced = 0
    for seq in _shuffled(_packed(spec, tokenizer), spec.seed):
        batch.append(seq)
        produced += 1
        if len(batch) == spec.batch_size:
            yield torch.tensor(batch, dtype=torch.int64)
            batch = []
        if spec.samples is not None and produced >= spec.samples:
            break
    if batch:
        yield torch.tensor(batch, dtype=torch.int64)
    if produced == 0:
        raise MinitronError(
            f"data '{spec.source}': the {spec.split} split has fewer than --seq-len {spec.seq_len} tokens; "
            "use more text, a shorter --seq-len or another --heldout-fraction"
        )


def describe(spec: DataSpec) -> dict[str, Any]:
    """A JSON-able description of the data for provenance headers (no file contents read)."""
    d: dict[str, Any] = asdict(spec)
    kind, path = _resolve(spec.source)
    d["kind"] = kind
    if kind == BUILTIN:
        d["corpus"] = "Python 3.11.7 standard-library sources (PSF licence)"
        d["sha256"] = _sha256(path)
    else:
        d["path"] = str(path.resolve())
        files = _matching_files(path, spec.glob) if kind == "directory" else _kind_files(kind, path)
        d["files"] = len(files)
        d["bytes"] = sum(f.stat().st_size for f in files)
    return d


# ---- reading documents ---------------------------------------------------------------------------


def _resolve(source: str) -> tuple[str, Path]:
    if source == BUILTIN:
        if not BUILTIN_CORPUS.exists():
            raise MinitronError(f"the built-in corpus is missing from this installation ({BUILTIN_CORPUS})")
        return BUILTIN, BUILTIN_CORPUS
    path = Path(source).expanduser()
    if not path.exists():
        raise MinitronError(f"--data {source}: no such file or directory (or pass 'builtin')")
    if path.is_dir():
        saved_dataset = (path / "state.json").exists() and (path / "dataset_info.json").exists()
        if saved_dataset or (path / "dataset_dict.json").exists():
            return "saved-dataset", path
        return "directory", path
    return _file_kind(path), path


def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSED]
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    if suffixes and suffixes[-1] in JSONL_SUFFIXES:
        return "jsonl"
    return "text"


def _open_text(path: Path):
    opener = COMPRESSED.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8")


def _all_documents(spec: DataSpec) -> Iterator[str]:
    kind, path = _resolve(spec.source)
    if kind == BUILTIN:
        yield from _jsonl_documents(path, "text")
    elif kind == "saved-dataset":
        for arrow in _kind_files(kind, path):
            yield from _arrow_documents(arrow, spec.text_field)
    elif kind == "directory":
        files = _matching_files(path, spec.glob)
        if not files:
            raise MinitronError(f"--data {path}: no files match --glob '{spec.glob}'")
        for file in files:
            yield from _file_documents(file, spec.text_field)
    else:
        yield from _file_documents(path, spec.text_field)


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    kind = _file_kind(path)
    if kind == "jsonl":
        yield from _jsonl_documents(path, text_field)
    elif kind == "parquet":
        yield from _parquet_documents(path, text_field)
    else:
        try:
            with _open_text(path) as f:
                yield f.read()
        except UnicodeDecodeError as e:
            raise MinitronError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
            raise MinitronError(f"{path}: corrupt compressed file ({e})") from None


def _matching_files(root: Path, glob: str) -> list[Path]:
    patterns = [p.strip() for p in glob.split(",") if p.strip()]
    if not patterns:
        raise MinitronError("--glob is empty; give patterns such as '**/*.txt,**/*.md'")
    files = {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _kind_files(kind: str, path: Path) -> list[Path]:
    if kind != "saved-dataset":
        return [path]
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if "train" not in splits:
            raise MinitronError(f"--data {path}: saved DatasetDict has no 'train' split (has {splits})")
        path = path / "train"
    state = json.loads((path / "state.json").read_text())
    files = [path / f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise MinitronError(f"--data {path}: saved dataset lists no Arrow files in state.json")
    return files


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    try:
        with _open_text(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MinitronError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict) or text_field not in record:
                    raise MinitronError(f"{path}:{line_no}: no field '{text_field}' (set --text-field)")
                text = record[text_field]
                if not isinstance(text, str):
                    raise MinitronError(f"{path}:{line_no}: field '{text_field}' is not a string")
                yield text
    except UnicodeDecodeError as e:
        raise MinitronError(f"{path}: not UTF-8 text ({e.reason})") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise MinitronError(f"{path}: corrupt compressed file ({e})") from None


def _pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise MinitronError(
            "reading Parquet or saved datasets needs pyarrow: pip install 'minitron[data]'"
        ) from None
    return pyarrow


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    _pyarrow()
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several unrelated types for unreadable files
        raise MinitronError(f"{path}: not a readable Parquet file ({e})") from None
    if text_field not in file.schema_arrow.names:
        raise MinitronError(
            f"{path}: no column '{text_field}' (has {file.schema_arrow.names}; set --text-field)"
        )
    for batch in file.iter_batches(columns=[text_field], batch_size=1024):
        yield from _strings(batch.column(0), path, text_field)


def _arrow_documents(path: Path, text_field: str) -> Iterator[str]:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowInvalid) as e:
        raise MinitronError(f"{path}: not a readable Arrow file ({e})") from None
    if text_field not in reader.schema.names:
        raise MinitronError(f"{path}: no column '{text_field}' (has {reader.schema.names}; set --text-field)")
    index = reader.schema.names.index(text_field)
    for batch in reader:
        yield from _strings(batch.column(index), path, text_field)


def _strings(column, path: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise MinitronError(f"{path}: column '{text_field}' holds {column.type}, not text")
    for value in column.to_pylist():
        if value is not None:
            yield value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- tokens and packing --------------------------------------------------------------------------


def _packed(spec: DataSpec, tokenizer) -> Iterator[list[int]]:
    """Sequences of exactly seq_len tokens: documents joined with EOS after each, cut in order."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MinitronError("the tokenizer has no EOS token; packing needs one between documents")
    buffer: list[int] = []
    for ids in _tokenised(documents(spec), tokenizer):
        buffer.extend(ids)
        buffer.append(eos)
        while len(buffer) >= spec.seq_len:
            yield buffer[: spec.seq_len]
            del buffer[: spec.seq_len]


def _tokenised(docs: Iterable[str], tokenizer) -> Iterator[list[int]]:
    chunk: list[str] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == TOKENIZE_DOCS:
            yield from tokenizer(chunk, add_special_tokens=False)["input_ids"]
            chunk = []
    if chunk:
        yield from tokenizer(chunk, add_special_tokens=False)["input_ids"]


def _shuffled(items: Iterable[list[int]], seed: int, size: int = SHUFFLE_SEQUENCES) -> Iterator[list[int]]:
    """A bounded-memory shuffle: hold `size` items, emit a random one as each new one arrives."""
    rng = random.Random(seed)
    pool: list[list[int]] = []
    for item in items:
        if len(pool) < size:
            pool.append(item)
            continue
        i = rng.randrange(size)
        yield pool[i]
        pool[i] = item
    rng.shuffle(pool)
    yield from pool


# ---- tokenizer -----------------------------------------------------------------------------------

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}  # ids 0, 1, 2


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, as a transformers fast tokenizer.

    Special tokens take ids 0 (pad), 1 (bos), 2 (eos), as in the NemotronH configs. Byte-level means
    every string round-trips, so no text is ever unknown.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS)
