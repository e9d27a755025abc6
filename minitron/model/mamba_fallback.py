"""The PyTorch Mamba-2 path for machines without the mamba-ssm kernels: a faster chunked scan (SSD).

transformers' fallback `mamba2_chunk_scan` repeats B and C to every head and contracts 5-D
tensors with einsums whose layouts force copies; on a CPU that dominates a training step of a
narrow model. This computes the same function (same chunking, float32 inside) with B and C kept
per group and every contraction a batched matmul over contiguous (chunk, chunk) or (chunk, dim)
tiles. Equal to transformers' function up to float rounding, values and gradients
(tests/test_mamba_fallback.py); `bench/train_step.py` measures the gain.

Shapes (b = batch, L = sequence, h = heads = g groups x r heads per group, p = head_dim,
n = ssm state, c = chunks, Q = chunk size):
    x (b, L, h, p), dt (b, L, h), A (h,), B and C (b, L, g, n), D (h,) -> y (b, L, h, p)

`enable()` makes transformers' NemotronH mixer use it when the mamba-ssm kernels are absent;
with the kernels installed (CUDA machines) it changes nothing. It also replaces transformers'
per-function "falling back to its reference PyTorch implementation" warnings with one note of ours.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F


def chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    return_final_states: bool = False,
    **_: object,
):
    """Drop-in for transformers' `mamba2_chunk_scan` (same arguments, same result)."""
    b, L, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    r, Q = h // g, chunk_size
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1]).float()
    x = x.float()
    pad = (Q - L % Q) % Q
    c = (L + pad) // Q

    def chunks(t: torch.Tensor) -> torch.Tensor:  # (b, L, ...) -> (b, c, Q, ...) padded with zeros
        if pad:
            t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(b, c, Q, *t.shape[2:])

    # Two layouts of the discretised input: head-major (b, c, g, r, Q, p) for the per-head (Q, Q) @ (Q, p)
    # products, position-major (b, c, g, Q, r*p) where B and C, shared by a group's heads, multiply
    # all of its heads at once. No operand of a matmul is broadcast (broadcast batched matmuls are
    # slow on CPU).
    xq = chunks(x * dt[..., None]).reshape(b, c, Q, g, r, p).permute(0, 1, 3, 2, 4, 5)  # (b, c, g, Q, r, p)
    xh = xq.permute(0, 1, 2, 4, 3, 5).contiguous()  # (b, c, g, r, Q, p)
    Bc = chunks(B.float()).permute(0, 1, 3, 2, 4).contiguous()  # (b, c, g, Q, n)
    Cc = chunks(C.float()).permute(0, 1, 3, 2, 4).contiguous()  # (b, c, g, Q, n)
    dA = chunks(dt * A.float()).reshape(b, c, Q, g, r).permute(0, 1, 3, 4, 2)  # (b, c, g, r, Q)
    A_cum = torch.cumsum(dA, dim=-1)
    A_cum_q = A_cum.transpose(-1, -2)[..., None]  # (b, c, g, Q, r, 1)

    # 1. Within each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(A_cum_l - A_cum_s) xdt_s.
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    decay = (A_cum[..., :, None] - A_cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    CB = (Cc @ Bc.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, Q, Q), shared by the group's heads
    y_diag = ((CB * decay) @ xh).transpose(3, 4)  # (b, c, g, Q, r, p)

    # 2. Each chunk's contribution to the state at its end: (b, c, g, n, r*p).
    to_end = torch.exp(A_cum_q[..., -1:, :, :] - A_cum_q)  # (b, c, g, Q, r, 1)
    states = Bc.transpose(-1, -2) @ (xq * to_end).reshape(b, c, g, Q, r * p)

    # 3. States at chunk starts, carried across chunks (c is small: a loop of cheap steps).
    if initial_states is None:
        start = x.new_zeros(b, g, n, r * p)
    else:  # transformers' layout (b, h, p, n)
        start = initial_states.float().reshape(b, g, r, p, n).permute(0, 1, 4, 2, 3).reshape(b, g, n, r * p)
    chunk_decay = torch.exp(A_cum[..., -1]).repeat_interleave(p, dim=-1)[:, :, :, None]  # (b, c, g, 1, r*p)
    starts = []
    for k in range(c):
        starts.append(start)
        start = start * chunk_decay[:, k] + states[:, k]
    starts = torch.stack(starts, dim=1)  # (b, c, g, n, r*p)

    # 4. The state at the chunk start, read out by C and decayed to each position.
    y_off = (Cc @ starts).reshape(b, c, g, Q, r, p) * torch.exp(A_cum_q)
    y = (y_diag + y_off).permute(0, 1, 3, 2, 4, 5).reshape(b, c * Q, h, p)[:, :L]
    if D is not None:
        y = y + D.float()[:, None] * x
    if return_final_states:
        # contiguous: transformers views the cached state in its decode step
        return y, start.reshape(b, g, n, r, p).permute(0, 1, 3, 4, 2).reshape(b, h, p, n).contiguous()
    return y


def _kernels_present() -> bool:
    try:
        import mamba_ssm  # noqa: F401
    except Exception:
        return False
    return True


def transformers_scan():
    """transformers' own `mamba2_chunk_scan` (the reference), whether or not `enable()` ran."""
    from transformers.models.nemotron_h import modeling_nemotron_h

    return _original.get("scan", modeling_nemotron_h.mamba2_chunk_scan)


_original: dict[str, object] = {}


def enable() -> bool:
    """Route transformers' NemotronH PyTorch fallback scan through `chunk_scan`; True if it did.

    Process-wide and idempotent; `disable()` undoes it. A no-op when mamba-ssm is installed.
    """
    if _kernels_present():
        return False
    from transformers.models.nemotron_h import modeling_nemotron_h

    if "scan" not in _original:
        _original["scan"] = modeling_nemotron_h.mamba2_chunk_scan
        _quiet_transformers_fallback_warnings()
    modeling_nemotron_h.mamba2_chunk_scan = chunk_scan
    return True


FALLBACK_NOTE = (
    "note: the optional CUDA kernels (mamba-ssm, causal-conv1d) are not installed, so Mamba blocks run "
    "minitron's PyTorch path; that is expected on a CPU (on CUDA: pip install 'minitron[cuda]')"
)


class _OneNote(logging.Filter):
    """Drops transformers' kernel fall-back warnings; the first one is replaced by FALLBACK_NOTE."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "falling back to its reference PyTorch implementation" not in record.getMessage():
            return True
        if not _OneNote.said:
            _OneNote.said = True
            logging.getLogger("minitron").warning(FALLBACK_NOTE)
        return False


def _quiet_transformers_fallback_warnings() -> None:
    from transformers.integrations import hub_kernels

    logger = logging.getLogger(hub_kernels.__name__)
    if not any(isinstance(f, _OneNote) for f in logger.filters):
        logger.addFilter(_OneNote())


def disable() -> None:
    """Give transformers its own scan back."""
    from transformers.models.nemotron_h import modeling_nemotron_h

    if "scan" in _original:
        modeling_nemotron_h.mamba2_chunk_scan = _original["scan"]
