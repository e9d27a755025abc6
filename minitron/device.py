"""Which device and precision a command runs on: one parser for every --device flag.

`resolve_device("auto")` is the local rank's CUDA device when CUDA is there, else the CPU; a device
that this machine does not have is one clear error naming the flag, not a CUDA traceback later.
`autocast(precision, device)`: `auto` means bfloat16 autocast where the hardware computes in bf16
natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), float32 elsewhere.
"""

from __future__ import annotations

import os

import torch

from minitron.errors import MinitronError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MinitronError(f"{flag}: unknown device {name!r} (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MinitronError(f"{flag} {name}: this machine has no CUDA device (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MinitronError(
                f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ..)"
            )
    elif device.type not in ("cpu", "cuda"):
        raise MinitronError(f"{flag}: {device.type!r} is not supported (cpu, cuda, cuda:1, auto)")
    return device


def native_bf16(device: torch.device) -> bool:
    """True where bfloat16 matmuls run in hardware, so bf16 autocast is faster than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        probes = torch.cpu
        return bool(probes._is_avx512_bf16_supported() or probes._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: stay in float32
        return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise MinitronError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))
