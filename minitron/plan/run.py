"""`minitron plan`: the teacher and the student from what the user names, then the plan of every stage.

The student is one of: a checkpoint directory or built-in name (a pruned model, or a preset such as
nemotron-nano-9b-v2), a row of a search candidates file (`--candidate` + `--rank`), or target sizes
(`--hidden`, `--ffn`, ... and `--layers`/`--drop-blocks`) applied to the teacher. Only configs are
read: a 12B teacher is planned without its weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.model.arch import Architecture
from minitron.plan.stages import STAGES, Plan, PlanConfig, make_plan
from minitron.prune.target import TargetSpec


def resolve_student(
    teacher: Architecture,
    student: str | None = None,
    candidates: str | None = None,
    rank: int = 1,
    target: TargetSpec | None = None,
    scores: str | None = None,
) -> tuple[Architecture, str]:
    """The student's architecture and a name for it, from exactly one of the three ways to give it."""
    given = [name for name, value in (("a student model", student), ("--candidate", candidates),
                                      ("target sizes", target if target and target != TargetSpec() else None))
             if value is not None]  # fmt: skip
    if len(given) > 1:
        raise MinitronError(f"give the student one way, not {' and '.join(given)}")
    if student is not None:
        from minitron.model.load import resolve_model

        source = resolve_model(student)
        return source.architecture, source.name
    if candidates is not None:
        from minitron.prune.target import read_candidate

        target, name = read_candidate(candidates, rank), f"{candidates} rank {rank}"
    elif target is not None and target != TargetSpec():
        name = "target sizes"
    else:
        raise MinitronError(
            "no student: give a student model, --candidate FILE --rank N, or target sizes (--hidden ...)"
        )
    from minitron.prune.target import resolve_target

    loaded = None
    if scores is not None:
        from minitron.importance.scores import load_scores

        loaded = load_scores(scores)
    return resolve_target(teacher, target, loaded).arch, name


def parse_stages(text: str | None) -> tuple[str, ...]:
    if text is None:
        return STAGES
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise MinitronError(
            f"--stages: unknown stage {', '.join(unknown) or '(none)'}; stages: {', '.join(STAGES)}"
        )
    return stages


def run_plan(
    teacher: str,
    student: str | None = None,
    candidate: str | None = None,
    rank: int = 1,
    scores: str | None = None,
    drop_blocks: str | None = None,
    stages: str | None = None,
    steps: int | None = None,
    tokens: int = 50_000_000_000,
    compare_tokens: int = 2_000_000_000,
    allocator_headroom: str | None = None,
    **options: Any,
) -> Plan:
    """`minitron plan`'s options (one per axis of the table for the target sizes, the rest PlanConfig
    fields) -> the models resolved, every setting checked, the stages planned."""
    from minitron.model.axes import axes
    from minitron.model.load import resolve_model
    from minitron.prune.target import parse_block_list
    from minitron.units import parse_fraction

    wanted = parse_stages(stages)
    sizes = {a.name: options.pop(a.option, None) for a in axes()}
    target = TargetSpec(
        drop_blocks=parse_block_list(drop_blocks) if drop_blocks is not None else None, **sizes
    )
    headroom = parse_fraction(allocator_headroom, "--allocator-headroom") if allocator_headroom else None
    source = resolve_model(teacher)
    arch, student_name = resolve_student(source.architecture, student, candidate, rank, target, scores)
    config = PlanConfig(teacher=source.architecture, student=arch, teacher_name=source.name,
                        student_name=student_name, distill_tokens=tokens, compare_tokens=compare_tokens,
                        headroom=headroom, **options)  # fmt: skip
    if steps is not None:
        if steps < 1:
            raise MinitronError(f"--steps must be at least 1, got {steps}")
        config = dataclasses.replace(config, distill_tokens=steps * config.global_batch_ * config.seq_len)
    return make_plan(config, wanted)


def main(as_json: bool = False, out: str | None = None, console=None, **options: Any) -> Plan:
    """`minitron plan`: plan, write --out, print JSON (--json) or one table per stage and a summary."""
    from minitron.estimate import print_report
    from minitron.plan.report import plan_tables

    if out is not None and Path(out).is_dir():
        raise MinitronError(f"--out: {out} is a directory; give a file name")
    plan = run_plan(**options)
    print_report(plan.to_dict(), lambda: plan_tables(plan), out, as_json, console)
    return plan
