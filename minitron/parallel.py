"""Several processes under torchrun: the process group, ranks, sums across ranks, and the model as
trained (itself, DDP, or FSDP2 shards).

Scoring: each rank scores its share of the calibration batches, then the running sums (sums, sums of
squares, counts) are added up across ranks, so every rank ends with the single-process result (up to
float64 summation order). Training: every rank reads the same global batch and keeps its share of
the micro-batches; gradients are synchronised once per optimizer step. Sharded checkpoints
(torch.distributed.checkpoint) live in minitron.distill.checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
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


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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


def sum_over_ranks(totals: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Each named value summed over ranks (one collective)."""
    keys = sorted(totals)
    values = torch.stack([torch.as_tensor(totals[k]).float().cpu() for k in keys])
    all_reduce_sum_([values])
    return dict(zip(keys, values.tolist(), strict=True))


def fully_shard_blocks(model: torch.nn.Module) -> torch.nn.Module:
    """Shard `model` in place with FSDP2: each block, then the root (which keeps embeddings and head)."""
    from torch.distributed.fsdp import fully_shard

    from minitron.model.adapters import adapter_for

    for block in adapter_for(model).blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def wrap(model: torch.nn.Module, fsdp: bool, device: torch.device) -> torch.nn.Module:
    """The model as trained: itself in one process, else in DDP or sharded with FSDP2."""
    if rank_and_world()[1] == 1:
        return model
    if fsdp:
        return fully_shard_blocks(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def grad_sync(wrapped: torch.nn.Module, fsdp: bool, last: bool):
    """A context in which backward synchronises gradients only on the last micro-batch of a step."""
    if rank_and_world()[1] == 1:
        return nullcontext()
    if fsdp:
        wrapped.set_requires_gradient_sync(last)
        return nullcontext()
    return nullcontext() if last else wrapped.no_sync()
