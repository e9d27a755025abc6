"""Two gloo processes, each scoring its share of the batches, give the single-process scores."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from importance_helpers import calibration_batches, padded_batches, random_tiny_model

from minitron.importance.depth import score_depth
from minitron.importance.distributed import shard
from minitron.importance.width import score_width


def _batches():
    # Three batches: the ranks get unequal shares (2 and 1), padding included.
    return [*padded_batches(), (calibration_batches(n=1, batch=3)[0], None)]


def _score_all(batches):
    model = random_tiny_model()
    return {
        **score_width(model, batches),
        **{f"one-shot.{k}": v for k, v in score_depth(model, batches, "mse", "one-shot").items()},
        **{f"iterative.{k}": v for k, v in score_depth(model, batches, "kl", "iterative").items()},
    }


def _worker(rank, world, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = _score_all(shard(_batches()))
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_equal_single_process(tmp_path):
    out = tmp_path / "scores"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    expected = _score_all(_batches())
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert set(got) == set(expected)
        for key, value in expected.items():
            if key.endswith("order"):
                assert got[key].tolist() == value.tolist(), key
            else:
                torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-7, msg=key)
