"""Packing, batching, determinism and the train / held-out split, against slow references."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import torch

from minitron.data import BatchStream, DataSpec, documents, is_heldout, token_batches

DOCS = [f"doc {i}: " + "alpha beta gamma " * (i % 5 + 1) + "\n" for i in range(60)]


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def reference_sequences(docs, tokenizer, seq_len):
    """Concatenate every document + EOS, cut into seq_len pieces, drop the tail."""
    stream = []
    for d in docs:
        stream += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [tuple(stream[i : i + seq_len]) for i in range(0, len(stream) - seq_len + 1, seq_len)]


def rows(batches):
    return [tuple(r) for b in batches for r in b.tolist()]


def test_packed_sequences_match_reference(tmp_path, tokenizer):
    spec = DataSpec(source=str(write_jsonl(tmp_path / "d.jsonl", DOCS)), seq_len=16, batch_size=5)
    batches = list(token_batches(spec, tokenizer))
    expected = reference_sequences(list(documents(spec)), tokenizer, 16)
    assert Counter(rows(batches)) == Counter(expected)
    assert all(b.dtype == torch.int64 and b.shape[1] == 16 for b in batches)
    assert all(b.shape[0] == 5 for b in batches[:-1]) and 1 <= batches[-1].shape[0] <= 5
    eos_total = sum(int((b == tokenizer.eos_token_id).sum()) for b in batches)
    assert 0 < eos_total <= len(list(documents(spec)))


def test_same_spec_same_batches_other_seed_other_order(tmp_path, tokenizer):
    spec = DataSpec(source=str(write_jsonl(tmp_path / "d.jsonl", DOCS)), seq_len=8, batch_size=4)
    a, b = rows(token_batches(spec, tokenizer)), rows(token_batches(spec, tokenizer))
    c = rows(token_batches(dataclasses.replace(spec, seed=1), tokenizer))
    assert a == b
    assert a != c and Counter(a) == Counter(c)


def test_samples_limits_sequences(tmp_path, tokenizer):
    spec = DataSpec(source=str(write_jsonl(tmp_path / "d.jsonl", DOCS)), seq_len=8, batch_size=4, samples=10)
    batches = list(token_batches(spec, tokenizer))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    full = rows(token_batches(dataclasses.replace(spec, samples=None), tokenizer))
    assert rows(batches) == full[:10]


def test_split_is_by_document_hash_and_stable_under_reordering(tmp_path, tokenizer):
    forward = DataSpec(source=str(write_jsonl(tmp_path / "a.jsonl", DOCS)), heldout_fraction=0.25)
    backward = dataclasses.replace(forward, source=str(write_jsonl(tmp_path / "b.jsonl", DOCS[::-1])))
    held = list(documents(dataclasses.replace(forward, split="heldout")))
    train = list(documents(forward))
    assert sorted(held + train) == sorted(DOCS) and not set(held) & set(train)
    assert 0 < len(held) < len(DOCS)
    assert held == [d for d in DOCS if is_heldout(d, 0.25)]
    assert sorted(documents(dataclasses.replace(backward, split="heldout"))) == sorted(held)
    # Pinned: the split must not change across versions or machines (sha256, not Python's hash()).
    assert [i for i, d in enumerate(DOCS) if is_heldout(d, 0.25)] == PINNED_HELDOUT


def test_bounded_shuffle_keeps_memory_flat(tmp_path, tokenizer, monkeypatch):
    import minitron.data as data_module

    monkeypatch.setattr(data_module, "SHUFFLE_SEQUENCES", 16)
    spec = DataSpec(source=str(write_jsonl(tmp_path / "c.jsonl", DOCS)), seq_len=4, batch_size=1)
    stream = BatchStream(spec, tokenizer)
    out = [stream.next_in_epoch()]
    # The first sequence comes out as the 17th arrives: the pool holds 16, never more.
    assert len(stream.pool) == 16
    pools = []
    while (batch := stream.next_in_epoch()) is not None:
        out.append(batch)
        pools.append(len(stream.pool))
    assert max(pools) == 16
    expected = reference_sequences(list(documents(spec)), tokenizer, 4)
    assert sorted(rows(out)) == sorted(expected) and rows(out) != expected  # all of them, shuffled


PINNED_HELDOUT = [0, 8, 9, 12, 20, 21, 23, 26, 29, 37, 38, 45, 52, 55, 59]


def test_memory_does_not_grow_with_corpus_size(tmp_path, tokenizer):
    import tracemalloc

    def peak_bytes(n_docs):
        path = write_jsonl(
            tmp_path / f"c{n_docs}.jsonl", [f"doc {i}: " + "alpha beta " * 8 for i in range(n_docs)]
        )
        tracemalloc.start()
        n = sum(
            b.shape[0] for b in token_batches(DataSpec(source=str(path), seq_len=8, batch_size=4), tokenizer)
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, n

    small, n_small = peak_bytes(1000)
    large, n_large = peak_bytes(4000)
    assert n_large > 3.5 * n_small > 3.5 * 2048  # both corpora overflow the shuffle buffer
    assert large < 1.3 * small, (small, large)
