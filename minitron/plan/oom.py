"""Out of memory is one line: the stage, its planned peak, the options that lower it, the checkpoint kept.

`explain_out_of_memory(stage, planner, kept)` wraps a stage's long work. A CUDA OOM
(`torch.cuda.OutOfMemoryError`), a CPU allocation failure (RuntimeError "DefaultCPUAllocator: can't
allocate memory") or a `MemoryError` inside it becomes a `MinitronError`:

    out of memory in distill (CUDA out of memory. Tried to allocate 2.00 GiB): planned peak 83.1 GiB
    per device on NVIDIA H100 80GB HBM3; lower it with --gradient-checkpointing (47.2 GiB), ...;
    the last checkpoint (step-200) is kept: --resume continues from it

`planner` builds the stage's plan from the live settings; when it cannot, the line says so instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.units import format_bytes

CPU_ALLOCATION_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and CPU_ALLOCATION_FAILURE in str(error)


def message(stage: str, error: BaseException, plan: Any, kept: Path | None, resume_hint: str | None) -> str:
    """The one line (see the module docstring); `plan` is a StagePlan or None."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = reason.split(". If reserved")[0].split(" (GPU 0;")[0]  # torch appends a long allocator note
    parts = [f"out of memory in {stage} ({reason})"]
    if plan is None:
        parts.append("no plan for these settings (minitron plan sizes them)")
    else:
        parts.append(f"planned peak {format_bytes(plan.peak_bytes)} per device on {plan.device_name}")
        fixes = [f"{fix['change']} ({format_bytes(fix['peak_bytes'])})" for fix in plan.fixes
                 if fix["peak_bytes"] < plan.peak_bytes]  # fmt: skip
        if fixes:
            parts.append("lower it with " + ", ".join(fixes))
    if kept is not None:
        parts.append(
            f"the last checkpoint ({kept.name}) is kept" + (f": {resume_hint} from it" if resume_hint else "")
        )
    elif resume_hint:
        parts.append("no checkpoint had been written yet")
    return "; ".join(parts)


@contextmanager
def explain_out_of_memory(
    stage: str,
    planner: Callable[[], Any],
    kept: Callable[[], Path | None] = lambda: None,
    resume_hint: str | None = None,
) -> Iterator[None]:
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        try:
            plan = planner()
        except Exception:  # a plan is a courtesy here: never hide the out-of-memory behind its failure
            plan = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
        raise MinitronError(message(stage, error, plan, kept(), resume_hint)) from None


def current_device(device: Any):
    """The GPU description of a torch device ("cpu" for the CPU) that plans are made for."""
    import torch

    from minitron.memory import GPU

    device = torch.device(device)
    if device.type != "cuda":
        return "cpu"
    props = torch.cuda.get_device_properties(device)
    return GPU(props.name, props.total_memory, 0.0, 0.0)


def training_plan(config: Any, model: Any, objective: Any, world: int, device: Any):
    """The plan of a train/distill/compare run from its live settings (TrainConfig, model, objective)."""
    from minitron.distill.kd import unwrap
    from minitron.model.arch import Architecture
    from minitron.plan.stages import PlanConfig

    student = Architecture.from_hf_config(unwrap(model).config)
    teacher_model = getattr(objective, "teacher", None)
    teacher = Architecture.from_hf_config(teacher_model.config) if teacher_model is not None else student
    precision = {"auto": "auto", "bf16": "bf16"}.get(config.precision, "fp32")
    plan_config = PlanConfig(
        teacher=teacher, student=student, gpu=current_device(device), gpus=world, fsdp=config.fsdp,
        seq_len=config.data.seq_len, batch_size=config.data.batch_size, precision=precision,
        teacher_dtype=getattr(objective, "teacher_dtype", "auto"), with_teacher=teacher_model is not None,
        gradient_checkpointing=config.gradient_checkpointing, chunk_tokens=getattr(objective, "chunk_tokens", 256),
    )  # fmt: skip
    return _with_fixes(plan_config, "distill")


def model_plan(stage: str, arch: Any, device: Any, **settings: Any):
    """The plan of `score` or a `search` trial on one model (the candidate sized as the model: an upper bound)."""
    from minitron.plan.stages import PlanConfig

    return _with_fixes(PlanConfig(teacher=arch, student=arch, gpu=current_device(device), **settings), stage)


def _with_fixes(config: Any, stage: str):
    """The stage's plan with the changes that lower its peak, even when the plan says it fits (it did not)."""
    import dataclasses

    from minitron.plan.stages import fixes, plan_stage

    plan = plan_stage(config, stage)
    return plan if plan.fixes else dataclasses.replace(plan, fixes=fixes(config, stage))
