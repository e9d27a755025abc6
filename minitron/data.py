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
  each read by its own kind, in sorted path order (the readers: text_files.py);
- `hf:NAME[:CONFIG][@SPLIT]`: a Hugging Face Hub dataset (or a local Hub-style repository,
  `hf:/path/to/repo`), streamed with `datasets`; its position is the stream's own state dict
  (hub_data.py).

Documents are split into train / held-out by the SHA-256 of their text, so the split is the same on
every run and machine and a document never lands on both sides. Each document is tokenised with the
model's tokenizer, followed by EOS, and the token stream is cut into `seq_len` sequences (a sequence
may span documents; the incomplete tail is dropped). Sequences pass through a bounded shuffle buffer
seeded by `seed`, so memory stays flat however large the corpus is.

`BatchStream` yields the same batches epoch after epoch and carries a small state dict (file
offsets, tokens read but not packed yet, the shuffle buffer) so training resumes in O(1).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from minitron.errors import MinitronError, check_choice
from minitron.hub_data import check_hub_source, describe_hub, hub_documents, is_hub
from minitron.runs import file_digest
from minitron.text_files import (
    BUILTIN,
    DEFAULT_GLOB,
    START,
    Position,
    kind_files,
    matching_files,
    positioned_documents,
    resolve_source,
)

SPLITS = ("train", "heldout")
# What to do about too little text, in the options every command that reads text has; a command with
# more (train's --heldout-fraction) passes its own hint.
SHORT_DATA_HINT = "use more text or a shorter --seq-len"

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
            raise MinitronError("--data must name a file, a directory, hf:NAME or 'builtin'")
        if is_hub(self.source):
            check_hub_source(self.source)
        if self.seq_len < 2:
            raise MinitronError(f"--seq-len must be at least 2, got {self.seq_len}")
        if self.batch_size < 1:
            raise MinitronError(f"--batch-size must be positive, got {self.batch_size}")
        if self.samples is not None and self.samples < 1:
            raise MinitronError(f"--samples must be positive, got {self.samples}")
        check_choice("split", self.split, SPLITS)
        if not 0.0 < self.heldout_fraction < 1.0:
            raise MinitronError(f"--heldout-fraction must be in (0, 1), got {self.heldout_fraction}")
        if not self.text_field:
            raise MinitronError("--text-field must not be empty")

    @classmethod
    def from_options(cls, data: str, text_field: str, glob: str | None, **fields: Any) -> DataSpec:
        """From the options every command that reads text shares: --data, --text-field and --glob
        (none: the default patterns)."""
        return cls(source=data, text_field=text_field, glob=glob or DEFAULT_GLOB, **fields)

    @classmethod
    def of_command(cls, config: Any, samples: int, split: str) -> DataSpec:
        """`samples` sequences of `split` from the text a command's config names (its data, text_field,
        glob, seq_len and batch_size: score's and search's options)."""
        return cls.from_options(config.data, config.text_field, config.glob, seq_len=config.seq_len,
                                batch_size=config.batch_size, samples=samples, split=split)  # fmt: skip


def is_heldout(text: str, fraction: float) -> bool:
    """Held-out membership from the document's own bytes: stable across runs, machines and order."""
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return h < fraction * 2**64


def documents(spec: DataSpec) -> Iterator[str]:
    """Every non-empty document of the spec's split, streamed in a fixed order."""
    want_heldout = spec.split == "heldout"
    for text, _ in _positioned(spec, START):
        if text.strip() and is_heldout(text, spec.heldout_fraction) == want_heldout:
            yield text


def token_batches(spec: DataSpec, tokenizer, hint: str = SHORT_DATA_HINT) -> Iterator[Any]:
    """(batch_size, seq_len) int64 tensors of packed token ids: one epoch of `BatchStream`, the same
    batches for the same spec.

    The last batch may hold fewer sequences; sequences are never padded. Too little text for one
    sequence is an error that ends with `hint` (what the running command's options can do about it).
    """
    stream = BatchStream(spec, tokenizer, hint=hint)
    while (batch := stream.next_in_epoch()) is not None:
        yield batch
    if stream.produced == 0:
        raise too_short(spec, hint)


def too_short(spec: DataSpec, hint: str) -> MinitronError:
    return MinitronError(
        f"data '{spec.source}': the {spec.split} split has fewer than --seq-len {spec.seq_len} tokens; {hint}"
    )


def describe(spec: DataSpec) -> dict[str, Any]:
    """A JSON-able description of the data for provenance headers (no file contents read)."""
    d: dict[str, Any] = asdict(spec)
    if is_hub(spec.source):
        return {**d, **describe_hub(spec.source)}
    kind, path = resolve_source(spec.source)
    d["kind"] = kind
    if kind == BUILTIN:
        d["corpus"] = "Python 3.11.7 standard-library sources (PSF licence)"
        d["sha256"] = file_digest(path)
    else:
        d["path"] = str(path.resolve())
        files = matching_files(path, spec.glob) if kind == "directory" else kind_files(kind, path)
        d["files"] = len(files)
        d["bytes"] = sum(f.stat().st_size for f in files)
    return d


def check_source(source: str) -> None:
    """Refuse a --data that names nothing, before any work (what it holds is read later)."""
    if is_hub(source):
        check_hub_source(source)
    else:
        resolve_source(source)


def _positioned(spec: DataSpec, start: Position) -> Iterator[tuple[str, Position | dict[str, Any]]]:
    """Every document (both splits) from `start` on, each with the position just after it: a file
    position (text_files.py), or for a Hub stream its state dict."""
    if is_hub(spec.source):
        return hub_documents(spec.source, spec.text_field, None if start == START else start)
    return positioned_documents(spec, start)


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

    Epoch e shuffles with seed spec.seed + e (epoch 0 is `token_batches(spec)`), then the next epoch
    starts. `state_dict()` between batches captures where the stream stands: the
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

    def _start_epoch(self, epoch: int) -> None:
        self.epoch, self.produced, self.position = epoch, 0, START
        self.buffer: list[int] = []
        self.packed = 0  # tokens at the front of `buffer` already cut into sequences
        self.pool: list[list[int]] = []
        self.rng = random.Random(self.spec.seed + epoch)
        self.draining = False
        self._docs: Iterator[tuple[str, Position]] | None = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self):
        while True:
            batch = self.next_in_epoch()
            if batch is not None:
                return batch
            if self.produced == 0:
                raise too_short(self.spec, self.hint)
            self._start_epoch(self.epoch + 1)

    def next_in_epoch(self):
        """The next batch of this epoch, or None at its end (the stream stays at the end)."""
        import torch

        batch: list[list[int]] = []
        while len(batch) < self.spec.batch_size:
            seq = self._next_sequence()
            if seq is None:
                break
            batch.append(seq)
        return torch.tensor(batch, dtype=torch.int64) if batch else None

    def _next_sequence(self) -> list[int] | None:
        """The next sequence of this epoch, or None at its end. A bounded shuffle: the pool holds
        SHUFFLE_SEQUENCES sequences and each new one takes the place of a random one, which is emitted;
        at the end of the text the pool is shuffled and emptied."""
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
        """The next seq_len tokens of the document stream: documents joined with EOS after each, cut in order."""
        n = self.spec.seq_len
        while len(self.buffer) - self.packed < n:
            # Drop the packed front only before reading more: one shift per TOKENIZE_DOCS documents,
            # not one per sequence.
            del self.buffer[: self.packed]
            self.packed = 0
            if not self._read_documents():
                return None
        seq = self.buffer[self.packed : self.packed + n]
        self.packed += n
        return seq

    def _read_documents(self) -> bool:
        """Tokenise the next TOKENIZE_DOCS documents of the split into the buffer; False at the end."""
        if self._docs is None:
            self._docs = _positioned(self.spec, self.position)
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
            "position": self.position if isinstance(self.position, dict) else list(self.position),
            "buffer": self.buffer[self.packed :],
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
        position = state["position"]
        self.position = position if isinstance(position, dict) else tuple(int(v) for v in position)
        self.buffer, self.packed = state["buffer"].tolist(), 0
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
