"""BatchStream: the batches of token_batches epoch after epoch, resumed in O(1) from its state."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json

import pytest
import torch

import minitron.data as data_module
from minitron.data import BatchStream, DataSpec, token_batches
from minitron.errors import MinitronError


@pytest.fixture
def small_pool(monkeypatch):
    """A shuffle buffer of 5 sequences, so the tiny corpus exercises filling, swapping and draining."""
    monkeypatch.setattr(data_module, "SHUFFLE_SEQUENCES", 5)


class Counting:
    """A tokenizer that counts the documents it is asked to tokenise."""

    def __init__(self, tokenizer):
        self.tokenizer, self.eos_token_id, self.documents = tokenizer, tokenizer.eos_token_id, 0

    def __call__(self, texts, **kwargs):
        self.documents += len(texts)
        return self.tokenizer(texts, **kwargs)


def write_corpus(path, n=60):
    path.write_text("".join(json.dumps({"text": f"def g{i}(y):\n    return y - {i * 7}\n" * (1 + i % 4)}) + "\n"
                            for i in range(n)))  # fmt: skip
    return path


@pytest.mark.parametrize("samples", [None, 7])
def test_stream_is_token_batches_epoch_after_epoch(tmp_path, tokenizer, small_pool, samples):
    spec = DataSpec(source=str(write_corpus(tmp_path / "c.jsonl")), seq_len=8, batch_size=3, samples=samples)
    expected = []
    for epoch in range(3):
        expected += list(token_batches(dataclasses.replace(spec, seed=spec.seed + epoch), tokenizer))
    got = list(itertools.islice(BatchStream(spec, tokenizer), len(expected)))
    assert [b.shape for b in got] == [b.shape for b in expected]
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.xz", ".parquet", "hf:"])
def test_resumed_stream_continues_exactly_without_rereading(
    tmp_path, tokenizer, small_pool, suffix, monkeypatch, hub_repo
):
    source = write_corpus(tmp_path / "c.jsonl")
    if suffix == "hf:":  # a local Hub-style repository: the datasets stream's own state_dict resumes it
        source = "hf:" + str(hub_repo([json.loads(line)["text"] for line in source.read_text().splitlines()]))
    if suffix == ".jsonl.xz":
        import lzma

        (tmp_path / "c.jsonl.xz").write_bytes(lzma.compress(source.read_bytes()))
        source = tmp_path / "c.jsonl.xz"
    elif suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        texts = [json.loads(line)["text"] for line in source.read_text().splitlines()]
        pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet", row_group_size=7)
        source = tmp_path / "c.parquet"
    spec = DataSpec(source=str(source), seq_len=8, batch_size=3)
    whole = list(itertools.islice(BatchStream(spec, tokenizer), 40))
    for cut in (1, 9, 23):
        stream = BatchStream(spec, tokenizer)
        list(itertools.islice(stream, cut))
        buffer = io.BytesIO()
        torch.save(stream.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        resumed_tok, fresh_tok = Counting(tokenizer), Counting(tokenizer)
        resumed = list(itertools.islice(BatchStream(spec, resumed_tok, state), 40 - cut))
        for a, b in zip(resumed, whole[cut:], strict=True):
            assert torch.equal(a, b)
        # Resuming tokenises only what the remaining batches need, never the consumed documents again.
        list(itertools.islice(BatchStream(spec, fresh_tok), 40))
        assert resumed_tok.documents < fresh_tok.documents


def test_state_is_bounded_by_the_shuffle_buffer(tmp_path, tokenizer, small_pool):
    spec = DataSpec(source=str(write_corpus(tmp_path / "c.jsonl", n=400)), seq_len=8, batch_size=2)
    stream = BatchStream(spec, tokenizer)
    sizes = []
    for _ in range(3):
        list(itertools.islice(stream, 50))
        state = stream.state_dict()
        sizes.append(state["pool"].numel() + state["buffer"].numel())
    assert max(sizes) <= 5 * 8 + 64 * 200  # pool + at most one tokenised chunk of documents
    with pytest.raises(MinitronError, match="other data settings"):
        BatchStream(dataclasses.replace(spec, seq_len=16), tokenizer, state)
