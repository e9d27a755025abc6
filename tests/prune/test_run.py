"""`minitron prune` end to end: checkpoint out, round trip, sharding, safety of the output directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from prune_helpers import random_scores
from safetensors.torch import load_file
from tiny_models import generate_in_fresh_process

from minitron.errors import MinitronError
from minitron.importance.scores import load_scores, save_scores
from minitron.model.arch import Architecture
from minitron.prune import PruneConfig, run
from minitron.prune.select import select_units
from minitron.prune.slicing import prune_model
from minitron.prune.target import TargetSpec, resolve_target

SPEC = TargetSpec(hidden=23, ffn=41, attn_heads=2, mamba_heads=6, mamba_head_dim=3, drop_blocks=(1, 6))


@pytest.fixture
def checkpoint(tiny_checkpoint):
    """The tiny random checkpoint plus a small word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(97)}, unk_token="w3"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w3", eos_token="w2").save_pretrained(
        tiny_checkpoint
    )
    return tiny_checkpoint


def _tree_digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_checkpoint_round_trip_matches_in_memory_pruning(
    tmp_path, checkpoint, tiny_model, scores_file, token_batch
):
    before = _tree_digest(checkpoint)
    out = tmp_path / "pruned"
    result = run(PruneConfig(model=str(checkpoint), out=out, scores=scores_file, target=SPEC, command="test"))

    scores = load_scores(scores_file)
    target = resolve_target(result.source, SPEC, scores)
    expected = prune_model(tiny_model, select_units(result.source, target, scores))
    loaded = _load(out)
    torch.testing.assert_close(_logits(loaded, token_batch), _logits(expected, token_batch), rtol=0, atol=0)

    assert sum(p.numel() for p in loaded.parameters()) == target.arch.n_params == result.target.n_params
    assert Architecture.from_hf_config(json.loads((out / "config.json").read_text())) == target.arch
    assert _tree_digest(checkpoint) == before  # the source is never written
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(result.record["tokenizer_files"])
    assert (out / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()

    record = json.loads((out / "minitron.json").read_text())
    assert record["source"]["fingerprint"] == result.record["source"]["fingerprint"]
    assert record["scores"]["header"]["architecture"]["hidden"] == 32
    assert record["target"]["hidden"] == 23 and record["target"]["blocks"] == 6
    assert record["dropped_blocks"] == [1, 6]
    assert record["kept"]["kept_blocks"] == [0, 2, 3, 4, 5, 7]
    assert record["kept"]["hidden_kept"]["count"] == 23
    assert record["command"] == "test"
    assert not list(tmp_path.glob(".pruned.*"))  # no temp directory left behind


def test_generate_with_cache_in_a_fresh_process(tmp_path, checkpoint, scores_file):
    out = tmp_path / "pruned"
    run(PruneConfig(model=str(checkpoint), out=out, scores=scores_file, target=SPEC))
    got = generate_in_fresh_process(out, out, "w5 w9 w11 w40 w7", 12)
    assert len(got["cached"][0]) == 5 + 12
    assert got["cached"] == got["plain"]  # the KV/SSM cache with renumbered layers gives the same tokens


def test_sharded_output_has_an_index_and_loads(tmp_path, checkpoint, scores_file, token_batch):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run(PruneConfig(model=str(checkpoint), out=single, scores=scores_file, target=SPEC))
    run(
        PruneConfig(
            model=str(checkpoint), out=sharded, scores=scores_file, target=SPEC, max_shard_size="12KB"
        )
    )
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 3
    assert all(p.stat().st_size <= 12_000 + 4096 or len(load_file(p)) == 1 for p in shards)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    tensors = {k: v for p in shards for k, v in load_file(p).items()}
    assert set(index["weight_map"]) == set(tensors) == set(load_file(single / "model.safetensors"))
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    torch.testing.assert_close(
        _logits(_load(sharded), token_batch), _logits(_load(single), token_batch), rtol=0, atol=0
    )


def test_same_target_twice_is_bit_identical_and_identity_keeps_every_tensor(
    tmp_path, checkpoint, scores_file
):
    a, b, same = tmp_path / "a", tmp_path / "b", tmp_path / "same"
    run(PruneConfig(model=str(checkpoint), out=a, scores=scores_file, target=SPEC))
    run(PruneConfig(model=str(checkpoint), out=b, scores=scores_file, target=SPEC))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()

    run(PruneConfig(model=str(checkpoint), out=same))
    src, got = load_file(checkpoint / "model.safetensors"), load_file(same / "model.safetensors")
    assert set(src) == set(got)
    assert all(torch.equal(src[k], got[k]) for k in src)


def test_dtype_cast(tmp_path, checkpoint, scores_file):
    out = tmp_path / "bf16"
    run(PruneConfig(model=str(checkpoint), out=out, scores=scores_file, target=SPEC, dtype="bfloat16"))
    tensors = load_file(out / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert _load(out).lm_head.weight.shape == (97, 23)


def test_layers_drops_the_head_of_the_depth_order(tmp_path, checkpoint, tiny_arch):
    scores = random_scores(tiny_arch, seed=5)
    scores.tensors["depth.order"] = torch.tensor([4, 0, 7, 1, 2, 3, 5, 6])
    path = save_scores(scores, tmp_path / "s.safetensors")
    result = run(
        PruneConfig(model=str(checkpoint), out=tmp_path / "o", scores=path, target=TargetSpec(layers=5))
    )
    assert result.record["dropped_blocks"] == [0, 4, 7]
    assert result.target.pattern == "".join(c for i, c in enumerate(tiny_arch.pattern) if i not in (0, 4, 7))


def test_candidate_file_selects_a_rank(tmp_path, checkpoint, scores_file):
    candidates = {
        "candidates": [
            {
                "rank": 1,
                "drop_blocks": [0],
                "hidden": 30,
                "ffn": 64,
                "attn_heads": 4,
                "mamba_heads": 8,
                "mamba_head_dim": 4,
                "loss": 1.0,
            },
            {
                "rank": 2,
                "drop_blocks": [2, 3],
                "hidden": 16,
                "ffn": 20,
                "attn_heads": 2,
                "mamba_heads": 2,
                "mamba_head_dim": 1,
                "params": 123,
            },
        ],
        "budget": "ignored",
    }
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps(candidates))
    result = run(
        PruneConfig(model=str(checkpoint), out=tmp_path / "o", scores=scores_file, candidate=path, rank=2)
    )
    t = result.target
    assert (t.hidden, t.ffn, t.attn_heads, t.mamba_heads, t.mamba_head_dim, t.n_blocks) == (
        16,
        20,
        2,
        2,
        1,
        6,
    )
    assert result.record["candidate"]["rank"] == 2


def test_interrupted_prune_leaves_nothing(tmp_path, checkpoint, scores_file, monkeypatch):
    import minitron.prune.writer as writer

    real = writer.write_shard
    calls = []

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(writer, "write_shard", failing)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(
            PruneConfig(
                model=str(checkpoint), out=out, scores=scores_file, target=SPEC, max_shard_size="12KB"
            )
        )
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.safetensors", "tiny-ckpt"]


def test_output_directory_rules(tmp_path, checkpoint, scores_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(MinitronError, match="not empty; pass --overwrite"):
        run(PruneConfig(model=str(checkpoint), out=out))
    assert (out / "keep.txt").exists()
    run(PruneConfig(model=str(checkpoint), out=out, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()

    for bad in (checkpoint, checkpoint / "sub"):
        with pytest.raises(MinitronError, match="overlaps the source"):
            run(PruneConfig(model=str(checkpoint), out=bad, overwrite=True))
    with pytest.raises(MinitronError, match="overlaps the source"):
        run(PruneConfig(model=str(checkpoint), out=tmp_path, overwrite=True))  # would replace the source
    (tmp_path / "empty").mkdir()
    run(PruneConfig(model=str(checkpoint), out=tmp_path / "empty"))  # an empty directory is fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": TargetSpec(ffn=32)}, r"width pruning \(--ffn\) needs --scores"),
        ({"target": TargetSpec(layers=4)}, "--layers needs --scores"),
        ({"target": TargetSpec(ffn=65), "scores": "S"}, "ffn 65 > source 64"),
        ({"target": TargetSpec(mamba_heads=7), "scores": "S"}, "nearest legal: 6 or 8"),
        ({"target": TargetSpec(attn_heads=3), "scores": "S"}, "nearest legal: 2 or 4"),
        ({"target": TargetSpec(drop_blocks=(9,))}, r"out of range 0\.\.7"),
        ({"target": TargetSpec(drop_blocks=(1, 1))}, "lists a block twice"),
        ({"target": TargetSpec(layers=9), "scores": "S"}, "--layers 9 > source blocks 8"),
        ({"candidate": "missing.json"}, "no such candidates file"),
        ({"rank": 2}, "--rank selects a row of --candidate"),
        ({"candidate": "c.json", "target": TargetSpec(ffn=3)}, "drop --ffn"),
        ({"dtype": "int8"}, "--dtype must be one of"),
        ({"max_shard_size": "lots"}, "--max-shard-size: cannot read"),
        ({"scores": "nope.safetensors"}, "no such scores file"),
    ],
)
def test_bad_requests_give_one_clear_error(tmp_path, checkpoint, scores_file, kwargs, message):
    if kwargs.get("scores") == "S":
        kwargs["scores"] = scores_file
    elif "scores" in kwargs:
        kwargs["scores"] = tmp_path / kwargs["scores"]
    if "candidate" in kwargs:
        kwargs["candidate"] = tmp_path / kwargs["candidate"]
    with pytest.raises(MinitronError, match=message):
        run(PruneConfig(model=str(checkpoint), out=tmp_path / "o", **kwargs))
    assert not (tmp_path / "o").exists()


def test_scores_of_another_model_are_refused(tmp_path, checkpoint, tiny_arch):
    other = random_scores(tiny_arch.with_sizes(ffn=48))
    path = save_scores(other, tmp_path / "other.safetensors")
    with pytest.raises(MinitronError, match="ffn=48"):
        run(PruneConfig(model=str(checkpoint), out=tmp_path / "o", scores=path, target=TargetSpec(ffn=32)))
    foreign = random_scores(tiny_arch, fingerprint="0123456789abcdef")
    path = save_scores(foreign, tmp_path / "foreign.safetensors")
    with pytest.raises(MinitronError, match="other weights"):
        run(PruneConfig(model=str(checkpoint), out=tmp_path / "o", scores=path, target=TargetSpec(ffn=32)))


def test_candidate_file_errors(tmp_path):
    from minitron.prune.target import read_candidate

    path = tmp_path / "c.json"
    for text, message in [
        ("{", "not valid JSON"),
        ('{"rows": []}', "needs a 'candidates' list"),
        ('{"candidates": [{"rank": 1}]}', r"no candidate with rank 3; ranks present: \[1\]"),
        ('{"candidates": [{"rank": 3, "ffn": "big"}]}', "'ffn' must be an integer"),
        ('{"candidates": [{"rank": 3, "drop_blocks": "1,2"}]}', "'drop_blocks' must be a list"),
    ]:
        path.write_text(text)
        with pytest.raises(MinitronError, match=message):
            read_candidate(path, 3)


def test_sharded_source_with_a_stray_safetensors_file(tmp_path, checkpoint, scores_file):
    sharded = tmp_path / "sharded-src"
    run(PruneConfig(model=str(checkpoint), out=sharded, max_shard_size="12KB"))  # identity, sharded
    (sharded / "scores.safetensors").write_bytes(scores_file.read_bytes())  # not a weight file
    a, b = tmp_path / "from-single", tmp_path / "from-sharded"
    run(PruneConfig(model=str(checkpoint), out=a, scores=scores_file, target=SPEC))
    run(PruneConfig(model=str(sharded), out=b, scores=scores_file, target=SPEC))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
