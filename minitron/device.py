"""Which device and precision a command runs on: the one parser of every --device flag.

`resolve_device("auto")` is this process's CUDA device (cuda:LOCAL_RANK under torchrun) when CUDA is
there, else the CPU; a plain `cuda` is also this process's device. A device that this machine does not
have is one clear error naming the flag, before anything is loaded, not a CUDA traceback later.
`weights_dtype(dtype, device)`: `auto` means bfloat16 weights on CUDA and float32 on the CPU.
`autocast(precision, device)`: `auto` means bfloat16 autocast on CUDA devices that compute in bf16,
float32 elsewhere (on CPUs without bf16 units bf16 autocast is slower than float32, and on CPUs with
them it would change a run's numbers between machines). `native` asks for speed over sameness: bf16
wherever the hardware computes it (CUDA, or a CPU with AVX512-BF16 or AMX units; ~20% less CPU time
per step of the demo's tiny model), float32 elsewhere. The demo uses it.
"""

from __future__ import annotations

import os

import torch

from minitron.errors import MinitronError, check_choice

PRECISIONS = ("auto", "native", "bf16", "fp32")


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MinitronError(f"{flag}: unknown device {name!r} (cpu, cuda, cuda:1, auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MinitronError(f"{flag} {name}: this machine has no CUDA device (use cpu or auto)")
        count = torch.cuda.device_count()
        if device.index is None:  # each torchrun process on its own GPU
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % count)
        if device.index >= count:
            raise MinitronError(f"{flag} {name}: this machine has {count} CUDA device(s) (cuda:0 ..)")
    elif device.type != "cpu":
        raise MinitronError(f"{flag}: {device.type!r} is not supported (cpu, cuda, cuda:1, auto)")
    return device


def check_precision(precision: str) -> None:
    check_choice("--precision", precision, PRECISIONS)


def uses_bf16(precision: str, device: torch.device) -> bool:
    check_precision(precision)
    native = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "native" and device.type == "cpu":
        native = cpu_has_bf16()
    return precision == "bf16" or (precision in ("auto", "native") and native)


def cpu_has_bf16() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 autocast is emulated and slow."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))


def weights_dtype(dtype: str, device: torch.device | str) -> str:
    """The dtype to hold weights in: `dtype` itself, or for `auto` bfloat16 on CUDA, float32 on the CPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if torch.device(device).type == "cuda" else "float32"
