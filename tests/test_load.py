"""Resolving model arguments and loading checkpoints: every bad input is one clear MinitronError."""

from __future__ import annotations

import json

import pytest
import torch

from minitron.errors import MinitronError
from minitron.model import load
from minitron.model.load import load_model, resolve_model

GPT2_CONFIG = {
    "model_type": "gpt2",
    "architectures": ["GPT2LMHeadModel"],
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
}


def write_config(path, config) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))


# ---- what resolves --------------------------------------------------------------------------------
def test_local_checkpoint_resolves_and_loads_the_same_weights(
    tiny_checkpoint, tiny_arch, tiny_model, token_batch
):
    source = resolve_model(str(tiny_checkpoint))
    assert source.has_weights and source.path == tiny_checkpoint
    assert source.architecture == tiny_arch
    assert [f.name for f in source.safetensors_files()] == ["model.safetensors"]
    loaded = load_model(source)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(token_batch).logits, tiny_model(token_batch).logits, rtol=0, atol=0)


def test_load_model_casts_to_the_requested_dtype(tiny_checkpoint):
    model = load_model(resolve_model(tiny_checkpoint), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_fingerprint_is_stable_and_sees_changed_weights(tiny_checkpoint, tmp_path, tiny_model):
    first = resolve_model(tiny_checkpoint).fingerprint()
    assert resolve_model(tiny_checkpoint).fingerprint() == first
    with torch.no_grad():
        tiny_model.lm_head.weight.add_(1.0)
    tiny_model.save_pretrained(tmp_path / "changed")
    assert resolve_model(tmp_path / "changed").fingerprint() != first


@pytest.mark.parametrize(
    "name", ["nemotron-nano-12b-v2-base", "Nemotron-Nano-9B-v2", "nemotron-h-8b-base-8k"]
)
def test_presets_resolve_config_only(name):
    source = resolve_model(name)
    assert source.name == name.lower() and not source.has_weights
    assert source.architecture.model_type == "nemotron_h"
    assert source.fingerprint().startswith("config:")
    with pytest.raises(
        MinitronError, match=r"config-only preset .*`minitron prune` needs a local checkpoint"
    ):
        source.require_weights("minitron prune")


def test_builtin_checkpoint_resolves_when_installed(monkeypatch, tiny_checkpoint, tiny_arch):
    monkeypatch.setitem(load.BUILTIN_CHECKPOINTS, "tiny", tiny_checkpoint)
    source = resolve_model("tiny")
    assert source.name == "tiny" and source.path == tiny_checkpoint
    assert source.architecture == tiny_arch


def test_builtin_checkpoint_missing_from_installation(monkeypatch, tmp_path):
    monkeypatch.setitem(load.BUILTIN_CHECKPOINTS, "tiny", tmp_path / "assets" / "tiny")
    with pytest.raises(MinitronError, match=r"built-in checkpoint 'tiny' is missing from this installation"):
        resolve_model("tiny")


def test_a_local_directory_named_like_a_builtin_wins(monkeypatch, tmp_path, tiny_checkpoint, tiny_arch):
    monkeypatch.chdir(tiny_checkpoint.parent)
    tiny_checkpoint.rename(tiny_checkpoint.parent / "tiny")
    monkeypatch.setitem(load.BUILTIN_CHECKPOINTS, "tiny", tmp_path / "not-used")
    assert resolve_model("tiny").architecture == tiny_arch


# ---- what does not resolve ------------------------------------------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(MinitronError, match=r"no such directory"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(MinitronError, match=r"^\./nope/model: no such directory$"):
        resolve_model("./nope/model")


def test_file_instead_of_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(MinitronError, match=r"not a directory; pass a Hugging Face checkpoint directory"):
        resolve_model(str(tmp_path / "model.safetensors"))


def test_directory_without_config(tmp_path):
    with pytest.raises(MinitronError, match=r"no config.json \(not a Hugging Face checkpoint directory\)"):
        resolve_model(str(tmp_path))


def test_config_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{model_type: nemotron_h")
    with pytest.raises(MinitronError, match=r"config.json: not valid JSON"):
        resolve_model(str(tmp_path))


def test_config_without_model_type(tmp_path):
    write_config(tmp_path, {"hidden_size": 8})
    with pytest.raises(MinitronError, match=r"config.json: has no model_type"):
        resolve_model(str(tmp_path))


def test_unknown_name_suggests_the_closest_builtins():
    with pytest.raises(
        MinitronError, match=r"unknown model 'nemotron-nano-9b'.*did you mean nemotron-nano-9b-v2"
    ):
        resolve_model("nemotron-nano-9b")
    with pytest.raises(MinitronError, match=r"did you mean nemotron-nano-12b-v2-base"):
        resolve_model("nemotron-nano-12b-base")
    # a prefix of a built-in name suggests that name first, even when difflib ranks another higher
    with pytest.raises(MinitronError, match=r"did you mean nemotron-nano-12b-v2-base, "):
        resolve_model("nemotron-nano-12b")


def test_unknown_name_without_close_match_lists_the_builtins():
    with pytest.raises(
        MinitronError, match=r"built-in models: llama-3.1-8b, .*nemotron-h-8b-base-8k, .*qwen3-8b, tiny"
    ):
        resolve_model("xyzzy")


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    write_config(tmp_path / "gpt2", GPT2_CONFIG)
    with pytest.raises(MinitronError, match=r"unsupported architecture 'gpt2'; supported: nemotron_h, llama"):
        resolve_model(str(tmp_path / "gpt2"))


def test_mtp_nemotron_h_is_unsupported(tmp_path, tiny_arch):
    config = tiny_arch.to_config_dict()
    config["layers_block_type"] = ["linear_attention", "moe", "full_attention", "mlp"]
    config["num_nextn_predict_layers"] = 1
    write_config(tmp_path / "mtp", config)
    with pytest.raises(MinitronError, match=r"multi-token prediction layers \(num_nextn_predict_layers=1\)"):
        resolve_model(str(tmp_path / "mtp"))


# ---- broken weights -------------------------------------------------------------------------------
@pytest.fixture
def broken_checkpoint(tmp_path, tiny_checkpoint):
    """Returns a function that copies the tiny checkpoint with its safetensors bytes replaced."""

    def make(content: bytes):
        path = tmp_path / "broken"
        path.mkdir()
        (path / "config.json").write_bytes((tiny_checkpoint / "config.json").read_bytes())
        (path / "model.safetensors").write_bytes(content)
        return path

    return make


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "too short"])
def test_corrupt_safetensors_is_a_clear_error(broken_checkpoint, tiny_checkpoint, damage):
    data = (tiny_checkpoint / "model.safetensors").read_bytes()
    content = {
        "truncated": data[: len(data) // 2],
        "garbage header": data[:8] + b"{not json" + data[17:],
        "too short": b"abc",
    }[damage]
    path = broken_checkpoint(content)
    with pytest.raises(MinitronError, match=r"broken: cannot load checkpoint \(.*\)$"):
        load_model(resolve_model(path))


def test_safetensors_shorter_than_its_header_length_fails_fingerprint(broken_checkpoint):
    with pytest.raises(MinitronError, match=r"model.safetensors: truncated safetensors file"):
        resolve_model(broken_checkpoint(b"abc")).fingerprint()


def test_checkpoint_without_safetensors(tmp_path, tiny_arch):
    write_config(tmp_path / "empty", tiny_arch.to_config_dict())
    with pytest.raises(MinitronError, match=r"no \*.safetensors weights found"):
        load_model(resolve_model(tmp_path / "empty"))
