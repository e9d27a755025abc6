"""Lazy windowed reads and the streaming safetensors writer against safetensors itself."""

from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import minitron.prune.writer as writer
from minitron.prune.slicing import slice_tensor


def test_windowed_reads_equal_plain_indexing(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(50, 7, generator=g),
        "c": torch.randn(30, 1, 4, generator=g).to(torch.bfloat16),
        "v": torch.randn(40, generator=g),
    }
    save_file(tensors, tmp_path / "a.safetensors")
    source = writer.SourceTensors([tmp_path / "a.safetensors"])
    monkeypatch.setattr(writer, "READ_CHUNK_BYTES", 60)  # a few rows per window: many reads per tensor
    cases = {
        "w": [
            (None, None),
            (torch.tensor([0, 1, 2, 9, 30, 49]), torch.tensor([6, 0, 3])),
            (torch.arange(50), None),
        ],
        "c": [(torch.tensor([5, 3, 29, 0]), None, torch.tensor([1, 2]))],  # rows out of order too
        "v": [(torch.tensor([39]),), (None,)],
    }
    for key, indices in cases.items():
        for index in indices:
            got = source.read(key, index, tensors[key].dtype)
            assert torch.equal(got, slice_tensor(tensors[key], index))
    assert source.read("w", (None, None), torch.float64).dtype == torch.float64


def test_streamed_shards_read_back_with_safetensors(tmp_path):
    g = torch.Generator().manual_seed(1)
    tensors = {
        "a.bias": torch.randn(3, generator=g).to(torch.bfloat16),  # odd bf16 size before a float32
        "b.weight": torch.randn(5, 4, generator=g),
        "c": torch.randn(7, generator=g).to(torch.bfloat16),
        "d": torch.tensor(2.5),
    }
    specs = [writer.TensorSpec(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    shards = writer.plan_shards(specs, max_shard_bytes=64)
    assert len(shards) > 1 and sorted(s.name for _, g_ in shards for s in g_) == sorted(tensors)
    for file, group in shards:
        writer.write_shard(tmp_path / file, group, lambda s: tensors[s.name])
        with safe_open(str(tmp_path / file), framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
        for k, v in load_file(tmp_path / file).items():
            assert torch.equal(v, tensors[k]) and v.dtype == tensors[k].dtype
