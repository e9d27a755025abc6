"""Scoring under torchrun: each rank scores its share of the calibration batches, then the running sums
(sums, sums of squares, counts) are added up across ranks, so every rank ends with the single-process
result (up to float64 summation order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def launched_distributed() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> None:
    """Join the process group torchrun describes; gloo on CPU, nccl on CUDA."""
    import torch.distributed as dist

    if launched_distributed() and not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(device)  # NCCL collectives run on the current device
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(batches: Sequence[T]) -> list[T]:
    """This rank's batches: every world-th batch, starting at the rank."""
    rank, world = rank_and_world()
    return list(batches[rank::world])


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum every tensor across ranks, in place, in one collective (no-op in a single process)."""
    import torch.distributed as dist

    if not tensors or rank_and_world()[1] == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
