"""`minitron plan`: the teacher and the student from what the user names, then the plan of every stage.

The student is one of: a checkpoint directory or built-in name (a pruned model, or a preset such as
nemotron-nano-9b-v2), a row of a search candidates file (`--candidate` + `--rank`), or target sizes
(`--hidden`, `--ffn`, ... and `--layers`/`--drop-blocks`) applied to the teacher. Only configs are
read: a 12B teacher is planned without its weights.
"""

from __future__ import annotations

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
    candidates: str | None = None,
    rank: int = 1,
    target: TargetSpec | None = None,
    scores: str | None = None,
    stages: str | None = None,
    steps: int | None = None,
    **settings,
) -> Plan:
    """Resolve the models, check every setting, plan the stages (`settings`: PlanConfig fields)."""
    from minitron.model.load import resolve_model

    wanted = parse_stages(stages)
    source = resolve_model(teacher)
    arch, student_name = resolve_student(source.architecture, student, candidates, rank, target, scores)
    config = PlanConfig(teacher=source.architecture, student=arch, teacher_name=source.name,
                        student_name=student_name, **settings)  # fmt: skip
    if steps is not None:
        if steps < 1:
            raise MinitronError(f"--steps must be at least 1, got {steps}")
        import dataclasses

        config = dataclasses.replace(config, distill_tokens=steps * config.global_batch_ * config.seq_len)
    return make_plan(config, wanted)
