"""Estimated decode throughput: a memory-bandwidth roofline (torch-free).

Decoding is bound by memory traffic at small batch. One decode step for B sequences at context S reads

    bytes_per_step = weights                        (every weight once, shared by the batch)
                   + kv(B, S)                       (every cached key and value up to the context)
                   + 2 x (ssm(B) + conv(B))         (the Mamba states are read and written back)

and yields B tokens, so

    tokens/s = B x bandwidth / bytes_per_step

with the terms of `minitron.memory` (the same dtypes and engine as the budget). It ignores
compute, kernel launch and attention-score traffic, so it is an upper bound that ranks candidates
by how much they read, not a prediction of measured speed.
"""

from __future__ import annotations

from minitron.memory import GPU, MemoryEstimate


def decode_bytes_per_step(mem: MemoryEstimate) -> int:
    return mem.weights_bytes + mem.kv_cache_bytes + 2 * (mem.ssm_state_bytes + mem.conv_state_bytes)


def decode_tokens_per_s(mem: MemoryEstimate, gpu: GPU) -> float:
    return mem.batch * gpu.bandwidth_bytes_per_s / decode_bytes_per_step(mem)
