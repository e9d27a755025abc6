"""Tiny random NemotronH models built here, never downloaded."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny_models import TINY, randomize_

from minitron.model.arch import Architecture
from minitron.model.load import build_model


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need a CUDA device and `no_cuda` tests a machine without one: skip the others."""
    cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "no_cuda" in item.keywords and cuda:
            item.add_marker(pytest.mark.skip(reason="checks the error of a machine without CUDA"))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the whole session: tiny tensors on a shared 2-core machine run much
    faster without OpenMP threads waiting on each other (a tiny forward measured 40x slower with 2
    threads under load). Subprocesses get OMP_NUM_THREADS=1 from the tests that start them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_arch() -> Architecture:
    return TINY


@pytest.fixture
def tiny_model():
    return randomize_(build_model(TINY, seed=0), seed=0)


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    """A complete HF checkpoint directory of the tiny random model."""
    path = tmp_path / "tiny-ckpt"
    tiny_model.save_pretrained(path)
    return path


@pytest.fixture
def token_batch():
    return torch.randint(3, TINY.vocab, (2, 24), generator=torch.Generator().manual_seed(1))


# Doubling: the right continuation is the first choice; a trained model can be made to prefer it.
ITEMS = [{"q": f"{i} plus {i} is", "choices": [f" {2 * i}", f" {2 * i + 1}"], "label": 0} for i in range(8)]


@pytest.fixture
def task_yaml(tmp_path):
    data = tmp_path / "task" / "doubling.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    path = data.with_suffix(".yaml")
    path.write_text(
        "task: minitron_doubling\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    return path


@pytest.fixture
def random_checkpoint(tmp_path):
    """A tiny random NemotronH with a small BPE tokenizer, saved as a HF checkpoint directory."""
    from minitron.data import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer([f"{i} plus {i} is {2 * i}" for i in range(200)], vocab_size=120)
    model = randomize_(build_model(dataclasses.replace(TINY, vocab=len(tokenizer)), seed=0), seed=0)
    path = tmp_path / "random"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
