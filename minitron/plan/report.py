"""A plan as rich tables: one per stage (its memory terms), then what fits, on how many devices, in how long."""

from __future__ import annotations

from minitron.plan.stages import Plan, StagePlan
from minitron.units import format_bytes


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def stage_table(plan: Plan, stage: StagePlan):
    from rich.table import Table

    device = plan.config.device
    per = "per device" if plan.config.gpu != "cpu" else "process RSS"
    table = Table(title=f"{stage.stage}: {stage.what}", title_justify="left")
    table.add_column("term")
    table.add_column(per, justify="right")
    table.add_column("how")
    for term in stage.terms:
        table.add_row(term.name, format_bytes(int(term.bytes)), term.how)
    table.add_section()
    verdict = "[green]fits[/]" if stage.fits else "[red]does not fit[/]"
    table.add_row("peak", format_bytes(stage.peak_bytes), f"{verdict} in {format_bytes(stage.device_bytes)} ({device.name})",
                  style="bold")  # fmt: skip
    for fix in stage.fixes:
        mark = "[green]fits[/]" if fix["fits"] else "still over"
        table.add_row("  with", format_bytes(fix["peak_bytes"]), f"{fix['change']}: {mark}")
    return table


def summary_table(plan: Plan):
    from rich.table import Table

    c = plan.config
    table = Table(title=f"{plan.config.teacher_name} -> {plan.config.student_name} on {c.gpus} x {c.device.name}"
                  f"{' (FSDP)' if c.fsdp else ''}, MFU {c.mfu:.0%}", title_justify="left")  # fmt: skip
    for name in ("stage", "peak", "fits", "fewest devices", "time"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for stage in plan.stages:
        needed = "none fits" if stage.devices_needed is None else str(stage.devices_needed)
        time = format_duration(stage.seconds)
        if stage.stage == "search":
            time += f" per trial ({format_duration(stage.seconds * c.trials / c.gpus)} for {c.trials} on {c.gpus})"
        elif stage.stage == "compare":
            time += f" per candidate ({format_duration(stage.seconds * c.top)} for {c.top})"
        table.add_row(
            stage.stage, format_bytes(stage.peak_bytes), "yes" if stage.fits else "[red]no[/]", needed, time
        )
    return table


def plan_tables(plan: Plan) -> list:
    return [*(stage_table(plan, s) for s in plan.stages), summary_table(plan)]
