"""`minitron plan`: per-stage terms from the architecture, FSDP and checkpointing, fixes, and impossible plans."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tiny_models import TINY
from typer.testing import CliRunner

from minitron.cli import app
from minitron.memory import get_gpu
from minitron.model.load import resolve_model
from minitron.plan.peaks import CPU_RUNTIME_BYTES
from minitron.plan.stages import PlanConfig, make_plan, plan_stage

T12, S9 = "nemotron-nano-12b-v2-base", "nemotron-nano-9b-v2"


def run(*args: str):
    return CliRunner().invoke(app, ["plan", *args])


def nano(**settings) -> PlanConfig:
    return PlanConfig(
        teacher=resolve_model(T12).architecture, student=resolve_model(S9).architecture, **settings
    )


def terms_of(plan) -> dict[str, float]:
    return {t.name: t.bytes for t in plan.terms}


def test_json_has_every_stage_with_terms_from_the_architecture():
    result = run(T12, S9, "--gpus", "8", "--fsdp", "--gradient-checkpointing", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    teacher, student = resolve_model(T12).architecture, resolve_model(S9).architecture
    assert data["teacher"]["params"] == teacher.n_params == 12_310_001_152
    assert data["student"]["params"] == student.n_params == 8_888_227_328
    stages = {s["stage"]: s for s in data["stages"]}
    assert list(stages) == ["score", "search", "compare", "distill"]
    score = {t["name"]: t["bytes"] for t in stages["score"]["terms"]}
    assert score["teacher weights"] == teacher.n_params * 2  # bf16 on a GPU
    distill = {t["name"]: t["bytes"] for t in stages["distill"]["terms"]}
    assert distill["student weights"] == student.n_params * 4 // 8  # float32, sharded over 8
    assert distill["optimizer moments"] == 2 * student.n_params * 4 // 8
    for stage in stages.values():
        assert stage["peak_bytes"] == sum(t["bytes"] for t in stage["terms"])
        assert stage["fits"] == (stage["peak_bytes"] <= get_gpu("h100-80g").memory_bytes)
        assert stage["seconds"] > 0


def test_tables_print_every_stage():
    result = run(T12, S9, "--gpus", "8")
    assert result.exit_code == 0, result.output
    for word in (
        "score:",
        "search:",
        "compare:",
        "distill:",
        "teacher weights",
        "optimizer moments",
        "fewest",
    ):
        assert word in result.output


def test_fsdp_divides_the_training_state_and_finds_the_fewest_gpus():
    ddp, fsdp = plan_stage(nano(gpus=8), "distill"), plan_stage(nano(gpus=8, fsdp=True), "distill")
    assert terms_of(fsdp)["student weights"] == pytest.approx(terms_of(ddp)["student weights"] / 8)
    assert "DDP gradient buckets" in terms_of(ddp) and "FSDP gathered weights" in terms_of(fsdp)
    ckpt = nano(gpus=8, fsdp=True, gradient_checkpointing=True)
    needed = plan_stage(ckpt, "distill").devices_needed
    assert needed is not None and needed > 1
    assert plan_stage(dataclasses.replace(ckpt, gpus=needed), "distill").fits
    assert not plan_stage(dataclasses.replace(ckpt, gpus=needed - 1), "distill").fits


def test_compare_is_planned_as_the_one_process_it_runs_in():
    # compare refuses torchrun, so neither --gpus nor --fsdp shares its memory or its time
    spread = plan_stage(nano(gpus=8, fsdp=True, gradient_checkpointing=True), "compare")
    alone = plan_stage(nano(gradient_checkpointing=True), "compare")
    assert spread.peak_bytes == alone.peak_bytes and spread.seconds == alone.seconds
    assert spread.devices_needed is None and not spread.fits
    assert spread.fixes and not any("--fsdp" in f["change"] for f in spread.fixes)


def test_checkpointing_lowers_activations_and_costs_a_forward():
    plain, ckpt = plan_stage(nano(), "distill"), plan_stage(nano(gradient_checkpointing=True), "distill")
    assert terms_of(ckpt)["activations"] < terms_of(plain)["activations"] / 10
    t, s = resolve_model(T12).architecture.n_params, resolve_model(S9).architecture.n_params
    assert ckpt.flops / plain.flops == pytest.approx((2 * t + 8 * s) / (2 * t + 6 * s))


def test_a_stage_that_does_not_fit_lists_what_would_make_it_fit():
    plan = plan_stage(nano(gpus=8), "distill")  # DDP, no checkpointing: far over 80 GB
    assert not plan.fits and plan.devices_needed is None
    changes = {f["change"]: f for f in plan.fixes}
    assert changes["--gradient-checkpointing"]["peak_bytes"] < plan.peak_bytes
    assert any(f["fits"] for f in plan.fixes)
    assert all(f["peak_bytes"] < plan.peak_bytes for f in plan.fixes)
    assert plan_stage(nano(gpus=8, fsdp=True, gradient_checkpointing=True), "distill").fixes == []


def test_time_follows_flops_and_mfu():
    fast, slow = plan_stage(nano(gpus=8, mfu=0.5), "distill"), plan_stage(nano(gpus=8, mfu=0.25), "distill")
    assert slow.seconds == pytest.approx(2 * fast.seconds)
    t, s = resolve_model(T12).architecture.n_params, resolve_model(S9).architecture.n_params
    assert fast.flops == pytest.approx(50e9 * (2 * t + 6 * s))
    assert fast.seconds == pytest.approx(fast.flops / (8 * get_gpu("h100-80g").bf16_flops * 0.5))


def test_student_from_target_flags_and_from_a_candidates_file(tmp_path):
    result = run("tiny", "--hidden", "96", "--ffn", "256", "--stages", "distill", "--gpu", "cpu", "--json")
    assert result.exit_code == 0, result.output
    tiny = resolve_model("tiny").architecture
    assert json.loads(result.output)["student"]["params"] == tiny.with_sizes(hidden=96, ffn=256).n_params
    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps({"candidates": [{"rank": 1, "hidden": 64, "drop_blocks": [0, 1]}]}))
    result = run("tiny", "--candidate", str(candidates), "--rank", "1", "--stages", "score,distill", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["student"]["params"] == tiny.drop_blocks([0, 1]).with_sizes(hidden=64).n_params
    assert [s["stage"] for s in data["stages"]] == ["score", "distill"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            (S9, T12),
            "error: the student (12,310,001,152 parameters) is larger than the teacher (8,888,227,328)",
        ),
        ((T12, S9, "--gpus", "0"), "error: --gpus must be at least 1, got 0"),
        ((T12, S9, "--gpu", "h200"), "error: --gpu: unknown GPU 'h200'; known: a10g"),
        (
            (T12, S9, "--seq-len", "200000"),
            "error: --seq-len 200000 is longer than the teacher's position limit "
            "(max_position_embeddings 131072)",
        ),  # fmt: skip
        ((T12,), "error: no student: give a student model"),
        (
            (T12, S9, "--hidden", "4096"),
            "error: give the student one way, not a student model and target sizes",
        ),
        ((T12, S9, "--mfu", "0"), "error: --mfu must be above 0"),
        ((T12, S9, "--stages", "prune"), "error: --stages: unknown stage prune"),
        ((T12, S9, "--global-batch", "3", "--gpus", "2"), "error: --global-batch 3 is not a multiple"),
    ],
    ids=[
        "larger-student",
        "zero-gpus",
        "unknown-gpu",
        "too-long",
        "no-student",
        "two-students",
        "mfu",
        "stage",
        "global-batch",
    ],  # fmt: skip
)
def test_impossible_plans_get_one_clear_line(args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_cpu_plans_count_the_process_runtime():
    plan = make_plan(PlanConfig(teacher=TINY, student=TINY.with_sizes(ffn=32), gpu="cpu"), ("distill",))
    last = plan.stages[0].terms[-1]
    assert (last.name, last.bytes) == ("runtime", CPU_RUNTIME_BYTES)
    assert plan.stages[0].device_name == "CPU (process RSS)"


def test_search_runs_in_its_eval_dtype():
    fp32, bf16 = plan_stage(nano(), "search"), plan_stage(nano(eval_dtype="bfloat16"), "search")
    teacher = resolve_model(T12).architecture
    assert terms_of(fp32)["teacher weights"] == teacher.n_params * 4  # search's default --eval-dtype float32
    assert terms_of(bf16)["teacher weights"] == teacher.n_params * 2
    assert not fp32.fits and bf16.fits
    assert {"change": "--eval-dtype bfloat16", "peak_bytes": bf16.peak_bytes, "fits": True} in fp32.fixes


def test_steps_give_the_distillation_tokens():
    result = run(
        T12, S9, "--gpus", "8", "--steps", "10", "--global-batch", "64", "--seq-len", "4096", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["settings"]["distill_tokens"] == 10 * 64 * 4096
