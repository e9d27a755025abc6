"""`minitron plan`: will each stage fit on these devices, and how long will it take?

For a teacher, a student and the stage settings, every stage -- score, one search trial, compare per
candidate, distill -- gets its peak memory per device as a sum of terms (minitron.plan.terms), whether
that fits the device, the fewest devices of that type that make it fit, and its time from FLOPs at a
model-FLOPs utilisation (MFU). A stage that does not fit lists the changes that would make it fit.

Devices: a GPU preset of minitron.memory (memory = what nvidia-smi reports; the plan keeps the CUDA
context and the caching allocator's slack as terms), or `cpu`, where the plan is for the process's
peak RSS (it adds what the process holds before any model: `peaks.CPU_RUNTIME_BYTES`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from minitron.errors import MinitronError
from minitron.memory import GPU, get_gpu
from minitron.model.arch import Architecture
from minitron.plan import terms
from minitron.plan.peaks import score_terms, search_terms, train_terms
from minitron.plan.terms import Term
from minitron.units import parse_dtype

# Share of the counted bytes the allocator holds beyond them: the CUDA caching allocator's rounding and
# fragmentation; on CPU, freed blocks glibc keeps in the process (calibrated by bench/scale.py).
DEFAULT_HEADROOM = {"cuda": 0.10, "cpu": 0.10}
# Sustained float32 FLOP/s of a CPU core pair (what `minitron score` warns with); GPUs: their preset's peak.
CPU_FLOPS = 2e10
STAGES = ("score", "search", "compare", "distill")
DEVICE_LIMIT = 4096  # the largest device count the plan looks at for "fewest devices that fit"


@dataclass(frozen=True)
class PlanConfig:
    """Everything a plan needs; every check names its flag."""

    teacher: Architecture
    student: Architecture
    teacher_name: str = "teacher"
    student_name: str = "student"
    gpu: str | GPU = "h100-80g"  # a GPU preset, "cpu", or a GPU description (the device a run is on)
    gpus: int = 1
    fsdp: bool = False
    seq_len: int = 8192
    batch_size: int = 1  # micro-batch: sequences per device per forward
    global_batch: int | None = None  # sequences per optimizer step (None: batch_size x gpus)
    distill_tokens: int = 50_000_000_000
    compare_tokens: int = 2_000_000_000
    top: int = 3  # candidates compare distils
    teacher_dtype: str = "auto"  # score and distill: auto is bfloat16 on GPUs, float32 on CPU
    eval_dtype: str = "float32"  # the search's models (search --eval-dtype)
    student_dtype: str = "float32"  # the trained weights (minitron trains float32 master weights)
    precision: str = "auto"  # activations: bf16 autocast on GPUs, fp32 on CPU
    gradient_checkpointing: bool = False
    chunk_tokens: int = 256  # KD logit chunk
    samples: int = 1024  # calibration sequences of `score`
    depth_samples: int | None = None
    depth_mode: str = "iterative"
    depth_metric: str = "mse"
    depth_iterations: int | None = None
    eval_samples: int = 16  # search evaluation sequences
    top_k: int = 64  # the search teacher cache's top-k
    trials: int = 100
    mfu: float = 0.4
    headroom: float | None = None  # allocator share; None: DEFAULT_HEADROOM of the device kind
    with_teacher: bool = True  # False: `minitron train` (no teacher in the training stages)

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise MinitronError(f"--gpus must be at least 1, got {self.gpus}")
        if isinstance(self.gpu, str) and self.gpu != "cpu":
            get_gpu(self.gpu)
        elif self.gpus != 1 or self.fsdp:
            raise MinitronError("--gpu cpu plans one process: use --gpus 1 and no --fsdp")
        for flag, value in (("--seq-len", self.seq_len), ("--batch-size", self.batch_size),
                            ("--chunk-tokens", self.chunk_tokens), ("--samples", self.samples),
                            ("--eval-samples", self.eval_samples), ("--top-k", self.top_k),
                            ("--trials", self.trials), ("--top", self.top),
                            ("--tokens", self.distill_tokens), ("--compare-tokens", self.compare_tokens)):  # fmt: skip
            if value < 1:
                raise MinitronError(f"{flag} must be at least 1, got {value}")
        if not (math.isfinite(self.mfu) and 0 < self.mfu <= 1):
            raise MinitronError(f"--mfu must be above 0 and at most 1 (0.4 = 40%), got {self.mfu}")
        if self.headroom is not None and not 0 <= self.headroom < 1:
            raise MinitronError(
                f"--allocator-headroom must be at least 0% and below 100%, got {self.headroom}"
            )
        if self.global_batch is not None and self.global_batch % (self.batch_size * self.gpus):
            raise MinitronError(
                f"--global-batch {self.global_batch} is not a multiple of --batch-size x --gpus "
                f"({self.batch_size} x {self.gpus})"
            )
        for flag, dtype in (("--teacher-dtype", self.teacher_dtype), ("--student-dtype", self.student_dtype),
                            ("--eval-dtype", self.eval_dtype)):  # fmt: skip
            if dtype != "auto":
                parse_dtype(dtype, flag)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise MinitronError(f"--precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.top_k > self.teacher.vocab:
            raise MinitronError(f"--top-k {self.top_k} is more than the vocabulary ({self.teacher.vocab})")
        if self.student.n_params > self.teacher.n_params:
            raise MinitronError(
                f"the student ({self.student.n_params:,} parameters) is larger than the teacher "
                f"({self.teacher.n_params:,}): pruning only removes"
            )
        if self.student.vocab != self.teacher.vocab:
            raise MinitronError(
                f"student and teacher vocabularies differ ({self.student.vocab} vs {self.teacher.vocab}); "
                "distillation compares token by token"
            )
        limit = self.teacher.extra.get("max_position_embeddings")
        if isinstance(limit, int) and self.seq_len > limit:
            raise MinitronError(
                f"--seq-len {self.seq_len} is longer than the teacher's position limit "
                f"(max_position_embeddings {limit})"
            )

    # ---- resolved settings --------------------------------------------------------------------
    @property
    def device_kind(self) -> str:
        return "cpu" if self.gpu == "cpu" else "cuda"

    @property
    def device(self) -> GPU:
        if isinstance(self.gpu, GPU):
            return self.gpu
        if self.gpu == "cpu":
            return GPU("CPU (process RSS)", _physical_memory(), 0.0, CPU_FLOPS)
        return get_gpu(self.gpu)

    @property
    def teacher_dtype_(self) -> str:
        if self.teacher_dtype == "auto":
            return "float32" if self.device_kind == "cpu" else "bfloat16"
        return parse_dtype(self.teacher_dtype, "--teacher-dtype")

    @property
    def precision_(self) -> str:
        if self.precision == "auto":
            return "fp32" if self.device_kind == "cpu" else "bf16"
        return self.precision

    @property
    def headroom_(self) -> float:
        return DEFAULT_HEADROOM[self.device_kind] if self.headroom is None else self.headroom

    @property
    def global_batch_(self) -> int:
        return self.global_batch or self.batch_size * self.gpus

    @property
    def micro_tokens(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True)
class StagePlan:
    stage: str
    what: str  # one line: what the stage runs
    terms: list[Term]
    device_bytes: int
    fits: bool
    devices: int  # devices this stage runs on
    devices_needed: int | None  # the fewest that fit (None: no count of these devices fits)
    seconds: float
    flops: float
    device_name: str = ""
    fixes: list[dict[str, Any]] = field(default_factory=list)  # changes that make it fit

    @property
    def peak_bytes(self) -> int:
        return sum(int(t.bytes) for t in self.terms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "what": self.what,
            "terms": [t.to_dict() for t in self.terms],
            "peak_bytes": self.peak_bytes,
            "device_bytes": self.device_bytes,
            "fits": self.fits,
            "devices": self.devices,
            "devices_needed": self.devices_needed,
            "device_name": self.device_name,
            "flops": self.flops,
            "seconds": self.seconds,
            "hours": self.seconds / 3600,
            "fixes": self.fixes,
        }


# ---- the stages ------------------------------------------------------------------------------------
def _device_bytes(config: PlanConfig) -> int:
    return int(config.device.memory_bytes)


def _flops_per_s(config: PlanConfig, devices: int) -> float:
    return config.device.bf16_flops * config.mfu * devices


def plan_stage(config: PlanConfig, stage: str) -> StagePlan:
    if stage == "compare":  # compare refuses torchrun: one process on one device, candidates in turn
        config = _replaced(config, {"gpus": 1, "fsdp": False}) or config
    t, s = config.teacher, config.student
    if stage == "score":
        tokens = config.samples * config.seq_len
        depth_tokens = (config.depth_samples or config.samples) * config.seq_len
        flops = terms.forward_flops(t.n_params, tokens)
        if config.depth_metric != "none":
            flops += terms.depth_scoring_flops(t, depth_tokens, config.depth_mode, config.depth_metric,
                                               config.depth_iterations)  # fmt: skip
        what = f"{config.samples:,} x {config.seq_len:,} calibration tokens, {config.depth_mode} depth ({config.depth_metric})"
        stage_terms, devices = score_terms(config), config.gpus
    elif stage == "search":
        eval_tokens = config.eval_samples * config.seq_len
        flops = terms.forward_flops(s.n_params, eval_tokens)
        what = f"one trial over {eval_tokens:,} evaluation tokens ({config.trials} trials: x{config.trials})"
        stage_terms, devices = search_terms(config), 1
    elif stage in ("compare", "distill"):
        tokens = config.compare_tokens if stage == "compare" else config.distill_tokens
        flops = terms.forward_flops(t.n_params, tokens) + terms.train_flops(
            s.n_params, tokens, config.gradient_checkpointing
        )
        each = " per candidate, one process" if stage == "compare" else ""
        what = f"{tokens:,} tokens{each}, global batch {config.global_batch_} x {config.seq_len:,}"
        stage_terms, devices = train_terms(config), config.gpus
    else:
        raise MinitronError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    peak = sum(int(x.bytes) for x in stage_terms)
    fits = peak <= _device_bytes(config)
    # search: per trial (workers on several GPUs run trials side by side)
    rate = _flops_per_s(config, 1 if stage == "search" else devices)
    seconds = flops / rate if rate else float("nan")
    plan = StagePlan(stage, what, stage_terms, _device_bytes(config), fits, devices,
                     _devices_needed(config, stage, fits), seconds, flops, config.device.name)  # fmt: skip
    return plan if fits else dataclasses.replace(plan, fixes=fixes(config, stage))


def _devices_needed(config: PlanConfig, stage: str, fits: bool) -> int | None:
    """The fewest devices of this type on which the stage fits: only FSDP divides memory by devices."""
    if stage != "distill" or not config.fsdp:  # only distill and train shard (compare is one process)
        return 1 if fits else None
    budget = _device_bytes(config)
    for n in range(1, DEVICE_LIMIT + 1):
        if sum(int(x.bytes) for x in train_terms(config, gpus=n)) <= budget:
            return n
    return None


# Changes tried, in order, when a stage does not fit: (flag text, fields to change), for the stages they touch.
def _candidate_fixes(config: PlanConfig, stage: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    training = stage in ("compare", "distill")
    if training and not config.gradient_checkpointing:
        out.append(("--gradient-checkpointing", {"gradient_checkpointing": True}))
    if stage == "distill" and not config.fsdp and config.gpu != "cpu":
        out.append((f"--fsdp (on {config.gpus} GPUs)", {"fsdp": True}))
    if config.batch_size > 1:
        out.append(
            ("--batch-size 1", {"batch_size": 1, "global_batch": config.global_batch_ if training else None})
        )
    if stage == "search" and parse_dtype(config.eval_dtype) == "float32":
        out.append(("--eval-dtype bfloat16", {"eval_dtype": "bfloat16"}))
    elif stage != "search" and config.teacher_dtype_ == "float32":  # the flag of the stage's own command
        flag = "--dtype" if stage == "score" else "--teacher-dtype"
        out.append((f"{flag} bfloat16", {"teacher_dtype": "bfloat16"}))
    if training and config.precision_ == "fp32":
        out.append(("--precision bf16", {"precision": "bf16"}))
    if training and config.chunk_tokens > 64:
        out.append(("--chunk-tokens 64", {"chunk_tokens": 64}))
    if stage == "search" and config.top_k > 16:
        out.append(("--top-k 16", {"top_k": 16}))
    if config.seq_len > 64:
        out.append((f"--seq-len {config.seq_len // 2}", {"seq_len": config.seq_len // 2}))
    return out


def fixes(config: PlanConfig, stage: str) -> list[dict[str, Any]]:
    """Each single change that lowers the stage's peak, with its peak and whether it then fits; all of
    them together when none fits alone; and, for training, the fewest GPUs that fit with FSDP."""
    out = []
    tried = _candidate_fixes(config, stage)
    for flag, change in tried:
        changed = _replaced(config, change)
        if changed is not None:
            peak = _peak(changed, stage)
            out.append({"change": flag, "peak_bytes": peak, "fits": peak <= _device_bytes(config)})
    if len(tried) > 1 and not any(fix["fits"] for fix in out):
        together: dict[str, Any] = {}
        for _, change in tried:
            together.update(change)
        changed = _replaced(config, together)
        if changed is not None:
            peak = _peak(changed, stage)
            out.append({"change": " ".join(flag.split(" (")[0] for flag, _ in tried), "peak_bytes": peak,
                        "fits": peak <= _device_bytes(config)})  # fmt: skip
    if stage == "distill" and config.gpu != "cpu":
        fsdp = _replaced(config, {"fsdp": True, "global_batch": None})
        n = _devices_needed(fsdp, stage, False) if fsdp is not None else None
        if n is not None and (n != config.gpus or not config.fsdp):
            more = _replaced(fsdp, {"gpus": n})
            out.append({"change": f"--fsdp --gpus {n}", "peak_bytes": _peak(more, stage), "fits": True})
    return out


def _replaced(config: PlanConfig, change: dict[str, Any]) -> PlanConfig | None:
    try:
        return dataclasses.replace(config, **change)
    except MinitronError:
        return None


def _peak(config: PlanConfig, stage: str) -> int:
    stage_terms = {"score": score_terms, "search": search_terms}.get(stage, train_terms)(config)
    return sum(int(t.bytes) for t in stage_terms)


@dataclass(frozen=True)
class Plan:
    config: PlanConfig
    stages: list[StagePlan]

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        device = c.device
        return {
            "teacher": {"name": c.teacher_name, **c.teacher.summary()},
            "student": {"name": c.student_name, **c.student.summary()},
            "device": {
                "preset": c.gpu if isinstance(c.gpu, str) else None,
                "name": device.name,
                "memory_bytes": device.memory_bytes,
                "peak_flops": device.bf16_flops,
                "count": c.gpus,
            },  # fmt: skip
            "settings": {
                "fsdp": c.fsdp,
                "seq_len": c.seq_len,
                "batch_size": c.batch_size,
                "global_batch": c.global_batch_,
                "teacher_dtype": c.teacher_dtype_,
                "eval_dtype": c.eval_dtype,
                "student_dtype": c.student_dtype,
                "precision": c.precision_,
                "gradient_checkpointing": c.gradient_checkpointing,
                "chunk_tokens": c.chunk_tokens,
                "samples": c.samples,
                "depth_mode": c.depth_mode,
                "eval_samples": c.eval_samples,
                "top_k": c.top_k,
                "trials": c.trials,
                "top": c.top,
                "compare_tokens": c.compare_tokens,
                "distill_tokens": c.distill_tokens,
                "mfu": c.mfu,
                "allocator_headroom": c.headroom_,
            },  # fmt: skip
            "stages": [s.to_dict() for s in self.stages],
        }


def make_plan(config: PlanConfig, stages: tuple[str, ...] = STAGES) -> Plan:
    return Plan(config, [plan_stage(config, stage) for stage in stages])


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
