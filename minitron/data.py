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

`BatchStream` yields the same batches epoch after epoch and carries a small state dict (file
offsets, tokens read but not packed yet, the shuffle buffer) so training resumes in O(1).
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
# What to do about too little text, in the options every command that reads text has; a command with
# more (train's --heldout-fraction) passes its own hint.
SHORT_DATA_HINT = "use more text or a shorter --seq-len"

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


def token_batches(spec: DataSpec, tokenizer, hint: str = SHORT_DATA_HINT) -> Iterator[Any]:
    """(batch_size, seq_len) int64 tensors of packed token ids; the same batches for the same spec.

    The last batch may hold fewer sequences; sequences are never padded. Too little text for one
    sequence is an error that ends with `hint` (what the running command's options can do about it).
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
        raise too_short(spec, hint)


def too_short(spec: DataSpec, hint: str) -> MinitronError:
    return MinitronError(
        f"data '{spec.source}': the {spec.split} split has fewer than --seq-len {spec.seq_len} tokens; {hint}"
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


def check_source(source: str) -> None:
    """Refuse a --data that names nothing, before any work (what it holds is read later)."""
    _resolve(source)


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
    for text, _ in _positioned_documents(spec, START):
        yield text


# Where the document stream stands: (file index, offset in that file, line number). The offset is a byte
# offset for JSONL (of the decompressed stream for .gz/.xz), a row index for Parquet and Arrow, and 1
# for a text file already read. `_positioned_documents` restarts from a position without parsing or
# tokenising anything before it.
Position = tuple[int, int, int]
START: Position = (0, 0, 0)


def _positioned_documents(spec: DataSpec, start: Position) -> Iterator[tuple[str, Position]]:
    """Every document (both splits) from `start` on, each with the position just after it."""
    kind, path = _resolve(spec.source)
    if kind == BUILTIN:
        files, field = [path], "text"
    elif kind == "saved-dataset":
        files, field = _kind_files(kind, path), spec.text_field
    elif kind == "directory":
        files, field = _matching_files(path, spec.glob), spec.text_field
        if not files:
            raise MinitronError(f"--data {path}: no files match --glob '{spec.glob}'")
    else:
        files, field = [path], spec.text_field
    file_index, offset, line_no = start
    for index in range(file_index, len(files)):
        file = files[index]
        file_kind = "arrow" if kind == "saved-dataset" else _file_kind(file)
        reader = {"jsonl": _jsonl_documents, "parquet": _parquet_documents, "arrow": _arrow_documents}.get(
            file_kind, _text_document
        )
        for text, (new_offset, new_line) in reader(file, field, offset, line_no):
            yield text, (index, new_offset, new_line)
        offset, line_no = 0, 0


def _text_document(
    path: Path, text_field: str, offset: int, line_no: int
) -> Iterator[tuple[str, tuple[int, int]]]:
    """A text file is one document."""
    if offset:
        return
    try:
        with _open_text(path) as f:
            yield f.read(), (1, 0)
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


def _jsonl_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
    opener = COMPRESSED.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            if offset:
                f.seek(offset)  # for .gz/.xz this decompresses up to the offset; it parses nothing
            for raw in iter(f.readline, b""):
                line_no += 1
                line = raw.decode("utf-8")
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
                yield text, (f.tell(), line_no)
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


def _parquet_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
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
    # Skip whole row groups before the offset from the metadata alone.
    first_row, groups = 0, []
    for g in range(file.num_row_groups):
        rows = file.metadata.row_group(g).num_rows
        if first_row + rows > offset:
            groups.append(g)
        elif not groups:
            first_row += rows
    row = first_row
    if groups:
        for batch in file.iter_batches(columns=[text_field], batch_size=1024, row_groups=groups):
            yield from _rows(batch.column(0), path, text_field, row, offset)
            row += batch.num_rows


def _arrow_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowInvalid) as e:
        raise MinitronError(f"{path}: not a readable Arrow file ({e})") from None
    if text_field not in reader.schema.names:
        raise MinitronError(f"{path}: no column '{text_field}' (has {reader.schema.names}; set --text-field)")
    index = reader.schema.names.index(text_field)
    row = 0
    for batch in reader:  # memory-mapped: batches before the offset are skipped without copying
        if row + batch.num_rows > offset:
            yield from _rows(batch.column(index), path, text_field, row, offset)
        row += batch.num_rows


def _rows(
    column, path: Path, text_field: str, first_row: int, offset: int
) -> Iterator[tuple[str, tuple[int, int]]]:
    """(text, (next row, 0)) of the column's non-null rows at or after `offset`."""
    skip = max(0, offset - first_row)
    for i, value in enumerate(
        _strings(column.slice(skip), path, text_field, keep_none=True), first_row + skip
    ):
        if value is not None:
            yield value, (i + 1, 0)


def _strings(column, path: Path, text_field: str, keep_none: bool = False) -> Iterator[str | None]:
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise MinitronError(f"{path}: column '{text_field}' holds {column.type}, not text")
    for value in column.to_pylist():
        if value is not None or keep_none:
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


def _shuffled(items: Iterable[list[int]], seed: int, size: int | None = None) -> Iterator[list[int]]:
    """A bounded-memory shuffle: hold `size` items (SHUFFLE_SEQUENCES), emit a random one as each new one arrives."""
    size = SHUFFLE_SEQUENCES if size is None else size
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


# ---- resumable batch stream ----------------------------------------------------------------------


class BatchStream:
    """Packed batches epoch after epoch, resumable from a small state dict in O(1).

    Epoch e yields exactly `token_batches(spec with seed = spec.seed + e)`, batch for batch, then
    the next epoch starts. `state_dict()` between batches captures where the stream stands: the
    position in the document files, the tokens read but not yet packed, the shuffle buffer and its
    RNG. `BatchStream(spec, tokenizer, state)` continues from there by seeking the files (byte
    offsets, row indices); nothing already consumed is tokenised again. The state's size is bounded
    by the shuffle buffer (`SHUFFLE_SEQUENCES` x seq_len tokens), whatever the position.
    """

    def __init__(
        self, spec: DataSpec, tokenizer, state: dict[str, Any] | None = None, hint: str = SHORT_DATA_HINT
    ):
        self.spec, self.tokenizer, self.hint = spec, tokenizer, hint
        if tokenizer.eos_token_id is None:
            raise MinitronError("the tokenizer has no EOS token; packing needs one between documents")
        if state is None:
            self._start_epoch(0)
        else:
            self._load(state)

    @classmethod
    def replayed(cls, spec: DataSpec, tokenizer, epoch: int, batches: int) -> BatchStream:
        """The stream after `batches` batches of `epoch`, by reading them again (O(position)).

        Only for checkpoints written before streams saved their state; new ones resume in O(1).
        """
        stream = cls(spec, tokenizer)
        stream._start_epoch(epoch)
        for _ in range(batches):
            next(stream)
        return stream

    def _start_epoch(self, epoch: int) -> None:
        self.epoch, self.produced, self.position = epoch, 0, START
        self.buffer: list[int] = []
        self.pool: list[list[int]] = []
        self.rng = random.Random(self.spec.seed + epoch)
        self.draining = False
        self._docs: Iterator[tuple[str, Position]] | None = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self):
        import torch

        while True:
            batch: list[list[int]] = []
            while len(batch) < self.spec.batch_size:
                seq = self._next_sequence()
                if seq is None:
                    break
                batch.append(seq)
            if batch:
                return torch.tensor(batch, dtype=torch.int64)
            if self.produced == 0:
                raise too_short(self.spec, self.hint)
            self._start_epoch(self.epoch + 1)

    def _next_sequence(self) -> list[int] | None:
        """The next shuffled sequence of this epoch, or None at its end (mirrors `_shuffled`)."""
        if self.spec.samples is not None and self.produced >= self.spec.samples:
            return None
        while not self.draining:
            seq = self._next_packed()
            if seq is None:
                self.rng.shuffle(self.pool)
                self.pool.reverse()  # emitted from the end, so the order is the shuffled order
                self.draining = True
                break
            if len(self.pool) < SHUFFLE_SEQUENCES:
                self.pool.append(seq)
                continue
            i = self.rng.randrange(SHUFFLE_SEQUENCES)
            out, self.pool[i] = self.pool[i], seq
            self.produced += 1
            return out
        if not self.pool:
            return None
        self.produced += 1
        return self.pool.pop()

    def _next_packed(self) -> list[int] | None:
        """The next seq_len tokens of the document stream (mirrors `_packed` and `_tokenised`)."""
        n = self.spec.seq_len
        while len(self.buffer) < n:
            if not self._read_documents():
                return None
        seq = self.buffer[:n]
        del self.buffer[:n]
        return seq

    def _read_documents(self) -> bool:
        """Tokenise the next TOKENIZE_DOCS documents of the split into the buffer; False at the end."""
        if self._docs is None:
            self._docs = _positioned_documents(self.spec, self.position)
        want_heldout = self.spec.split == "heldout"
        chunk: list[str] = []
        for text, position in self._docs:
            self.position = position
            if text.strip() and is_heldout(text, self.spec.heldout_fraction) == want_heldout:
                chunk.append(text)
                if len(chunk) == TOKENIZE_DOCS:
                    break
        if not chunk:
            return False
        eos = self.tokenizer.eos_token_id
        for ids in self.tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            self.buffer.extend(ids)
            self.buffer.append(eos)
        return True

    def snapshot(self) -> dict[str, Any]:
        """Where the stream stands between two batches, cheaply (shallow copies); `pack` makes it a state dict.

        Sequences in the pool are never modified once made, so copying the list of them is enough.
        """
        return {
            "epoch": self.epoch,
            "produced": self.produced,
            "position": list(self.position),
            "buffer": list(self.buffer),
            "pool": list(self.pool),
            "rng": self.rng.getstate(),
            "draining": self.draining,
            "spec": asdict(self.spec),
        }

    @staticmethod
    def pack(snapshot: dict[str, Any]) -> dict[str, Any]:
        """A snapshot as tensors and plain values, for torch.save (and weights-only loading)."""
        import torch

        n = snapshot["spec"]["seq_len"]
        rng = random.Random()
        rng.setstate(snapshot["rng"])
        return {
            **snapshot,
            "buffer": torch.tensor(snapshot["buffer"], dtype=torch.int64),
            "pool": torch.tensor(snapshot["pool"], dtype=torch.int64).reshape(len(snapshot["pool"]), n),
            "rng": _rng_to_tensor(rng),
        }

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands between two batches (tensors and plain values, for torch.save)."""
        return self.pack(self.snapshot())

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("spec") != asdict(self.spec):
            raise MinitronError("the saved data position belongs to other data settings")
        self._start_epoch(int(state["epoch"]))
        self.produced = int(state["produced"])
        self.position = tuple(int(v) for v in state["position"])
        self.buffer = state["buffer"].tolist()
        self.pool = state["pool"].tolist()
        self.rng.setstate(_rng_from_tensor(state["rng"]))
        self.draining = bool(state["draining"])


def _rng_to_tensor(rng: random.Random):
    import torch

    version, internal, gauss = rng.getstate()
    return torch.tensor([version, *internal, -1 if gauss is None else 0], dtype=torch.int64), gauss


def _rng_from_tensor(saved) -> tuple:
    values, gauss = saved
    values = values.tolist()
    return values[0], tuple(values[1:-1]), gauss
