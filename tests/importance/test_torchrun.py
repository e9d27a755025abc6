"""`minitron score` under torchrun with 2 CPU processes (gloo) writes the single-process scores."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from minitron.importance.run import ScoreConfig, run
from minitron.importance.scores import load_scores


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(scored_checkpoint, tmp_path):
    ckpt, data = scored_checkpoint
    # 12 samples in batches of 4: the ranks score unequal shares (2 batches and 1).
    config = ScoreConfig(model=str(ckpt), data=str(data), samples=12, seq_len=16, batch_size=4, depth="kl",
                         device="cpu", out=tmp_path / "torchrun" / "scores.safetensors")  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "minitron", "score",
               str(ckpt), "--data", str(data), "--samples", "12", "--seq-len", "16", "--batch-size", "4",
               "--depth", "kl", "--device", "cpu", "--json", "--out", str(config.out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"header"') == 1  # only rank 0 reports
    got = load_scores(config.out)
    expected = run(dataclasses.replace(config, out=tmp_path / "single" / "scores.safetensors", progress=False,
                                       report=False))  # fmt: skip
    assert got.header["settings"]["world_size"] == 2 and expected.header["settings"]["world_size"] == 1
    assert got.header["samples"] == expected.header["samples"] == 12
    assert set(got.tensors) == set(expected.tensors)
    assert got.get("depth.order").tolist() == expected.get("depth.order").tolist()
    for key, value in expected.tensors.items():
        torch.testing.assert_close(got.tensors[key], value, rtol=1e-5, atol=1e-7, msg=key)
