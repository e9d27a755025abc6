"""A battery of bad inputs, tried as a new user would, across every command: none may end in a traceback.

Each input runs in-process (typer's CliRunner) from a scratch directory holding a few real and broken
files. An input passes when the command exits non-zero with SystemExit (never another exception),
prints no traceback, and says why in one `error:` line (or click's usage `Error:` line for an
option of the wrong type). Inputs that start long work are stopped after --timeout seconds and
reported as `slow` (a bad input must be refused before the work starts).

    python bench/bad_inputs.py                 # every input; prints a table and writes JSON
    python bench/bad_inputs.py --only fast     # the ones tests/issue20/test_issue20_battery.py runs
    python bench/bad_inputs.py --command search --json runs/bad_inputs.json

The fixtures (a scores file of the tiny teacher, a candidates file, a pruned student) take ~1 minute
to build on a 2-core CPU; `--only fast` needs none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Inputs that need the built fixtures (scores, candidates, a student) are `slow`; the rest `fast`.
FAST, SLOW = "fast", "slow"
NUMBERS = ("0", "-1", "nan", "inf", "1e400", "abc", "")


@dataclass(frozen=True)
class Case:
    command: str
    argv: tuple[str, ...]
    kind: str = FAST
    why: str = ""


class Stopped(BaseException):
    """Raised by the alarm: the input was accepted and work started."""


def cases() -> list[Case]:
    out: list[Case] = []

    def add(command: str, *argv: str, kind: str = FAST, why: str = "") -> None:
        out.append(Case(command, (command, *argv), kind, why))

    # ---- estimate (config only, all fast) ----
    tiny = ("tiny",)
    add("estimate", "/nonexistent", why="missing model")
    add("estimate", "afile.txt", why="model is a file")
    add("estimate", "adir", why="model is an empty directory")
    add("estimate", "not-a-preset", why="unknown name")
    add("estimate", "badconfig", why="config.json not JSON")
    add("estimate", "unsupported", why="unsupported model_type")
    for value in ("22", "22G", "-1GiB", "nanGiB", "1e400GiB", "abc", "0", "0GiB", "22 GiBs"):
        add("estimate", *tiny, "--budget", value, why=f"--budget {value}")
    for value in ("0", "-5", "abc", "1e400", "nan", "8q", "1.5.2k"):
        add("estimate", *tiny, "--context", value, why=f"--context {value}")
    for value in ("0", "-1", "abc"):
        add("estimate", *tiny, "--batch", value, why=f"--batch {value}")
    for value in ("100%", "150%", "-5%", "nan", "abc", "1"):
        add("estimate", *tiny, "--budget", "1GiB", "--headroom", value, why=f"--headroom {value}")
    for value in ("-1GiB", "abc", "1e400GiB", "2GiB"):
        add("estimate", *tiny, "--budget", "1GiB", "--reserve", value, why=f"--reserve {value}")
    for value in ("int3", "float64x", "abc", ""):
        add("estimate", *tiny, "--dtype", value, why=f"--dtype {value}")
        add("estimate", *tiny, "--kv-dtype", value, why=f"--kv-dtype {value}")
    add("estimate", *tiny, "--ssm-dtype", "abc")
    add("estimate", *tiny, "--engine", "tgi")
    add("estimate", *tiny, "--gpu", "a10")
    add("estimate", *tiny, "--gpu", "")
    for target in ("afile.txt/x.json", "/proc/x.json", "adir"):
        add("estimate", *tiny, "--out", target, why=f"--out {target}")
    add("estimate", why="no model")
    add("estimate", *tiny, "--no-such-option")

    # ---- score ----
    add("score", "/nonexistent")
    add("score", "afile.txt")
    add("score", "adir")
    add("score", "unsupported")
    add("score", "nemotron-nano-12b-v2-base", why="config-only preset: no weights")
    for option in ("--samples", "--seq-len", "--batch-size", "--depth-iterations", "--depth-samples"):
        for value in ("0", "-1", "abc"):
            if (option, value) != ("--depth-iterations", "0"):  # 0 is valid: every block ordered one-shot
                add("score", *tiny, option, value, why=f"{option} {value}")
    add("score", *tiny, "--seq-len", "1")
    add("score", *tiny, "--seq-len", "100000000", "--samples", "2", why="seq-len beyond every limit")
    add("score", *tiny, "--depth", "l1")
    add("score", *tiny, "--depth-mode", "twice")
    add("score", *tiny, "--aggregation", "max-max")
    add("score", *tiny, "--no-width", "--depth", "none", why="nothing to score")
    add("score", *tiny, "--dtype", "int8")
    add("score", *tiny, "--device", "cuda")
    add("score", *tiny, "--device", "tpu")
    add("score", *tiny, "--device", "cuda:7")
    add("score", *tiny, "--data", "/nonexistent")
    add("score", *tiny, "--data", "adir")
    add("score", *tiny, "--data", "empty.txt")
    add("score", *tiny, "--data", "broken.jsonl")
    add("score", *tiny, "--data", "nofield.jsonl")
    add("score", *tiny, "--data", "data.jsonl", "--text-field", "body")
    add("score", *tiny, "--data", "adir", "--glob", "*.nothing")
    add("score", *tiny, "--data", "hf:")
    for target in ("afile.txt/x.safetensors", "/proc/x.safetensors", "adir"):
        add("score", *tiny, "--samples", "2", "--seq-len", "16", "--out", target, why=f"--out {target}")
    add("score", "small-embedding", "--samples", "2", "--seq-len", "32", why="embedding < tokenizer")
    add("score", *tiny, "--samples", "2", "--seq-len", "32", "--depth-samples", "5", why="more than samples")

    # ---- search ----
    nano = ("nemotron-nano-12b-v2-base", "--no-eval")
    budget = ("--budget", "22GiB")
    add("search", "nemotron-nano-12b-v2-base", why="no budget")
    add("search", "/nonexistent", *budget)
    add("search", "afile.txt", *budget)
    add("search", "unsupported", *budget)
    for value in ("22", "22G", "-1GiB", "nanGiB", "1e400GiB", "abc", "0", "1KiB"):
        add("search", *nano, "--budget", value, why=f"--budget {value}")
    for axis in ("--layers", "--hidden", "--ffn", "--mamba-heads", "--mamba-head-dim", "--attn-heads"):
        for value in ("0", "-1", "abc", "99999", "5:2", "1:10:0", "1.5", "nan"):
            add("search", *nano, *budget, axis, value, why=f"{axis} {value}")
    add("search", *nano, *budget, "--mamba-heads", "100", why="not a multiple of groups")
    add("search", *nano, *budget, "--attn-heads", "33", why="not a multiple of KV heads")
    add("search", *nano, *budget, "--layers", "56", "--drop-blocks", "1,2")
    for value in ("99", "-1", "1,1", "a,b", "0:3"):
        add("search", *nano, *budget, "--drop-blocks", value, why=f"--drop-blocks {value}")
    for value in ("150%", "abc", "hidden=abc", "heads=10%", "attention-blocks=120%", "-5%", "nan"):
        add("search", *nano, *budget, "--max-prune", value, why=f"--max-prune {value}")
    add("search", *nano, *budget, "--layers", "20", why="depth beyond the default per-kind shares")
    for option, value in (("--granularity", "0"), ("--granularity", "-8"), ("--batch", "0"),
                          ("--trials", "0"), ("--workers", "0"), ("--top", "0"), ("--top-k", "0"),
                          ("--eval-samples", "0"), ("--seq-len", "1"), ("--seed-trials", "-1"),
                          ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "nan")):  # fmt: skip
        add("search", *nano, *budget, option, value, why=f"{option} {value}")
    for option, value in (("--min-params", "abc"), ("--min-params", "-1B"), ("--max-params", "1e400"),
                          ("--max-params", "0"), ("--min-params", "200%"), ("--max-params", "1M")):  # fmt: skip
        add("search", *nano, *budget, option, value, why=f"{option} {value}")
    add("search", *nano, *budget, "--min-params", "11B", "--max-params", "9B", why="min above max")
    add("search", *nano, *budget, "--objective", "accuracy")
    add("search", *nano, *budget, "--engine", "tgi")
    add("search", *nano, *budget, "--context", "0")
    add("search", *nano, *budget, "--context", "abc")
    add("search", *nano, *budget, "--dtype", "int3")
    add("search", *nano, "--gpu", "a10")
    add("search", *nano, *budget, "--headroom", "100%")
    add("search", *nano, *budget, "--reserve", "30GiB")
    add("search", *nano, *budget, "--scores", "/nonexistent")
    add("search", *nano, *budget, "--scores", "afile.txt")
    add("search", *nano, *budget, "--scores", "adir")
    add("search", *nano, *budget, "--device", "cuda")
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add("search", *nano, *budget, "--out", target, why=f"--out {target}")
    # every width at the source size: a search with weights that needs no scores reaches --storage
    source_widths = [
        w for axis in ("hidden", "ffn", "mamba-heads", "mamba-head-dim") for w in (f"--{axis}", "source")
    ]
    for url in ("nosuch://x", "sqlite:///afile.txt/x.db"):
        add("search", "tiny", "--budget", "1GiB", "--context", "8k", *source_widths, "--storage", url,
            "--out", "st", why=f"--storage {url}")  # fmt: skip
    add("search", "tiny", "--budget", "1KiB", "--context", "8k", "--no-eval", why="nothing fits")
    add("search", "tiny", "--budget", "20MiB", "--context", "8k", "--layers", "56", why="no scores")
    add(
        "search",
        "tiny",
        "--budget",
        "20MiB",
        "--context",
        "8k",
        "--scores",
        "scores.safetensors",
        "--layers",
        "56",
        "--data",
        "/nonexistent",
        kind=SLOW,
    )
    add(
        "search",
        "nemotron-nano-9b-v2",
        "--no-eval",
        "--budget",
        "22GiB",
        "--scores",
        "scores.safetensors",
        kind=SLOW,
        why="scores of another model",
    )

    # ---- prune ----
    add("prune", *tiny, "--out", "p1", why="nothing to prune")
    add("prune", "/nonexistent", "--out", "p2", "--hidden", "64")
    add("prune", "afile.txt", "--out", "p3", "--hidden", "64")
    add("prune", "nemotron-nano-12b-v2-base", "--out", "p4", "--hidden", "4096", why="no weights")
    add("prune", *tiny, "--out", "p5", "--hidden", "64", why="width without scores")
    for option, value in (("--hidden", "0"), ("--hidden", "-1"), ("--hidden", "99999"), ("--ffn", "0"),
                          ("--ffn", "99999"), ("--mamba-heads", "3"), ("--mamba-head-dim", "0"),
                          ("--attn-heads", "3"), ("--layers", "0"), ("--layers", "99"), ("--hidden", "abc")):  # fmt: skip
        add("prune", *tiny, "--out", "p6", option, value, why=f"{option} {value}")
    for value in ("99", "-1", "1,1", "a", ""):
        add("prune", *tiny, "--out", "p7", "--drop-blocks", value, why=f"--drop-blocks {value}")
    add("prune", *tiny, "--out", "p8", "--drop-blocks", ",".join(str(i) for i in range(62)))
    add("prune", *tiny, "--out", "p9", "--candidate", "/nonexistent")
    add("prune", *tiny, "--out", "p10", "--candidate", "notjson.json")
    add("prune", *tiny, "--out", "p11", "--candidate", "empty.json")
    add("prune", *tiny, "--out", "p12", "--candidate", "list.json")
    add("prune", *tiny, "--out", "p13", "--candidate", "wrongformat.json")
    add("prune", *tiny, "--out", "p14", "--candidate", "adir")
    add("prune", *tiny, "--out", "p15", "--candidate", "other-model.json", kind=SLOW)
    add("prune", *tiny, "--out", "p16", "--candidate", "candidates.json", "--rank", "0", kind=SLOW)
    add("prune", *tiny, "--out", "p17", "--candidate", "candidates.json", "--rank", "999", kind=SLOW)
    add("prune", *tiny, "--out", "p18", "--scores", "/nonexistent", "--hidden", "64")
    add("prune", *tiny, "--out", "p19", "--scores", "afile.txt", "--hidden", "64")
    add("prune", *tiny, "--out", "p20", "--dtype", "int8", "--drop-blocks", "1")
    for value in ("0", "abc", "-1GB", "2", "1e400GB"):
        add("prune", *tiny, "--out", "p21", "--max-shard-size", value, "--drop-blocks", "1", why=value)
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add("prune", *tiny, "--drop-blocks", "1", "--out", target, why=f"--out {target}")
    add("prune", *tiny, "--drop-blocks", "1", "--out", "nonempty", why="non-empty --out")
    add("prune", *tiny, "--drop-blocks", "1", why="no --out")

    # ---- train / distill (shared training options) ----
    student = ("tiny", "student")
    for command, lead in (("train", ("tiny",)), ("distill", student)):
        kind = FAST if command == "train" else SLOW
        for option in ("--steps", "--seq-len", "--batch-size", "--grad-accum", "--eval-batches"):
            for value in ("0", "-1", "abc"):
                add(command, *lead, option, value, "--out", "t1", kind=kind, why=f"{option} {value}")
        for option, value in (("--lr", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--lr", "inf"),
                              ("--lr", "1e400"), ("--min-lr-ratio", "2"), ("--min-lr-ratio", "-0.1"),
                              ("--warmup-steps", "-1"), ("--schedule", "linear"), ("--decay-fraction", "2"),
                              ("--weight-decay", "-1"), ("--grad-clip", "-1"), ("--grad-clip", "nan"),
                              ("--precision", "fp8"), ("--eval-every", "-1"), ("--save-every", "-1"),
                              ("--tokens", "-5"), ("--stop-at-step", "-1"), ("--heldout-fraction", "1"),
                              ("--heldout-fraction", "-0.1"), ("--heldout-fraction", "nan"),
                              ("--samples", "-1"), ("--device", "cuda"), ("--device", "tpu"),
                              ("--data", "/nonexistent"), ("--data", "empty.txt"), ("--data", "adir"),
                              ("--data", "broken.jsonl"), ("--seed", "-1")):  # fmt: skip
            add(
                command,
                *lead,
                option,
                value,
                "--out",
                "t2",
                "--steps",
                "2",
                kind=kind,
                why=f"{option} {value}",
            )
        add(command, *lead, "--resume", "--out", "nosuchrun", kind=kind, why="resume with nothing")
        for target in ("afile.txt/x", "/proc/x", "afile.txt"):
            add(command, *lead, "--steps", "2", "--out", target, kind=kind, why=f"--out {target}")
    add("train", "/nonexistent", "--out", "t4")
    add("train", "afile.txt", "--out", "t4")
    add("train", "nemotron-nano-12b-v2-base", "--out", "t5", why="no weights")
    short = ("--steps", "2", "--seq-len", "32")
    add("train", "small-embedding", *short, "--out", "t6", why="embedding < tokenizer")
    add("distill", "/nonexistent", "student", "--out", "d1", kind=SLOW)
    add("distill", "tiny", "/nonexistent", "--out", "d2")
    add("distill", "tiny", "afile.txt", "--out", "d3")
    add(
        "distill",
        "tiny",
        "tiny",
        "--teacher-topk",
        "999999",
        *short,
        "--out",
        "d4",
        why="top-k above the vocabulary",
    )
    add("distill", "tiny", "tiny", "--teacher-topk", "-1", "--out", "d5")
    add("distill", "tiny", "tiny", "--chunk-tokens", "0", "--out", "d6")
    add("distill", "tiny", "tiny", "--chunk-tokens", "-3", "--out", "d6")
    add("distill", "tiny", "tiny", "--loss", "mse", "--out", "d7")
    add("distill", "tiny", "tiny", "--tau", "0", "--out", "d8")
    add("distill", "tiny", "tiny", "--tau", "nan", "--out", "d8")
    add("distill", "tiny", "tiny", "--beta", "2", "--loss", "jsd", "--out", "d9")
    add("distill", "tiny", "tiny", "--ce-weight", "-1", "--out", "d10")
    add("distill", "tiny", "tiny", "--teacher-device", "cuda", "--out", "d11")
    add("distill", "tiny", "tiny", "--teacher-dtype", "int8", "--out", "d12")
    add("distill", "tiny", "nemotron-nano-12b-v2-base", "--out", "d13", why="student without weights")
    add("distill", "tiny", "small-embedding", *short, "--out", "d14", why="student with another vocabulary")

    # ---- compare ----
    for value in ("0", "-1", "abc"):
        add(
            "compare",
            "tiny",
            "candidates.json",
            "--top",
            value,
            "--out",
            "c1",
            kind=SLOW,
            why=f"--top {value}",
        )
    add(
        "compare",
        "tiny",
        "candidates.json",
        "--scores",
        "scores.safetensors",
        "--top",
        "99",
        "--steps",
        "1",
        "--chunk-tokens",
        "0",
        "--out",
        "c2",
        kind=SLOW,
        why="--chunk-tokens 0",
    )
    add("compare", "tiny", "/nonexistent", "--out", "c3")
    add("compare", "tiny", "notjson.json", "--out", "c4")
    add("compare", "tiny", "empty.json", "--out", "c5")
    add("compare", "tiny", "list.json", "--out", "c6")
    add("compare", "tiny", "wrongformat.json", "--out", "c7")
    add("compare", "tiny", "adir", "--out", "c8")
    add("compare", "tiny", "other-model.json", "--out", "c9", kind=SLOW)
    add("compare", "/nonexistent", "candidates.json", "--out", "c10", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--scores", "/nonexistent", "--out", "c11", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--device", "cuda", "--out", "c12", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--context", "abc", "--out", "c13", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--steps", "0", "--out", "c14", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--lr", "nan", "--out", "c15", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--teacher-topk", "999999", "--out", "c16", kind=SLOW)
    add("compare", "tiny", "candidates.json", "--data", "/nonexistent", "--out", "c17", kind=SLOW)
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add("compare", "tiny", "candidates.json", "--out", target, kind=SLOW, why=f"--out {target}")

    # ---- evaluate ----
    add("evaluate", "tiny", "--tasks", "", why="no tasks")
    add("evaluate", "tiny", "--tasks", "/nonexistent.yaml")
    add("evaluate", "tiny", "--tasks", "broken.yaml")
    add(
        "evaluate",
        "tiny",
        "--tasks",
        "missingfield.yaml",
        "--limit",
        "2",
        kind=SLOW,
        why="template lacks a field",
    )
    add("evaluate", "tiny", "--tasks", "task.yaml", "--limit", "0")
    add("evaluate", "tiny", "--tasks", "task.yaml", "--limit", "nan")
    add("evaluate", "tiny", "--tasks", "task.yaml", "--limit", "1.5")
    add("evaluate", "tiny", "--tasks", "task.yaml", "--batch-size", "0")
    add("evaluate", "tiny", "--tasks", "task.yaml", "--num-fewshot", "-1")
    add("evaluate", "tiny", "tiny", "--tasks", "task.yaml", why="the same model twice")
    add("evaluate", "/nonexistent", "--tasks", "task.yaml")
    add("evaluate", "nemotron-nano-12b-v2-base", "--tasks", "task.yaml", why="no weights")
    add("evaluate", "tiny", "--tasks", "task.yaml", "--device", "cuda")
    add("evaluate", "tiny", "--tasks", "no_such_task_name_xyz", "--limit", "1", kind=SLOW)
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add(
            "evaluate", "tiny", "--tasks", "task.yaml", "--limit", "1", "--out", target, why=f"--out {target}"
        )

    # ---- run ----
    for name in ("/nonexistent.toml", "afile.txt", "adir", "broken.toml", "unknownkey.toml", "noteacher.toml",
                 "teacherlist.toml", "unknownstage.toml", "badvalue.toml", "badtype.toml", "badbudget.toml",
                 "empty.toml"):  # fmt: skip
        # a budget nothing fits is found by the search stage, after score (not by the run file's check)
        add("run", name, "--out", "r1", why=name, kind=SLOW if name == "badbudget.toml" else FAST)
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add("run", "good.toml", "--out", target, why=f"--out {target}")
    add("run", "good.toml", "--out", "r2", "--eval-tasks", "/nonexistent.yaml")

    # ---- demo ----
    for target in ("afile.txt/x", "/proc/x", "afile.txt"):
        add("demo", "--out", target, why=f"--out {target}")
    add("demo", "--eval-tasks", "/nonexistent.yaml", "--out", "dm1")
    add("demo", "--no-such-option")
    return out


# ---- the scratch directory -------------------------------------------------------------------------
TOML_FILES = {
    "broken.toml": 'teacher = "tiny\n',
    "unknownkey.toml": 'teacher = "tiny"\nnot_an_option = 3\n',
    "noteacher.toml": 'data = "builtin"\n',
    "teacherlist.toml": 'teacher = ["tiny", "tiny"]\n',
    "unknownstage.toml": 'teacher = "tiny"\n[prunee]\nhidden = 3\n',
    "badvalue.toml": 'teacher = "tiny"\n[search]\nbudget = "22"\n',
    "badtype.toml": 'teacher = "tiny"\n[distill]\nsteps = "many"\n',
    "badbudget.toml": 'teacher = "tiny"\n[search]\nbudget = "1KiB"\n',
    "empty.toml": "",
    "good.toml": 'teacher = "tiny"\n[search]\nbudget = "20MiB"\ncontext = "8k"\n',
}


def make_scratch(root: Path, slow: bool) -> None:
    """The files the inputs name, in `root` (the working directory of every input)."""
    (root / "afile.txt").write_text("just a file\n")
    (root / "adir").mkdir()
    (root / "empty.txt").write_text("")
    (root / "broken.jsonl").write_text('{"text": "a"\n{{{\n')
    (root / "nofield.jsonl").write_text('{"body": "hello there"}\n' * 50)
    (root / "data.jsonl").write_text('{"text": "hello there"}\n' * 50)
    (root / "notjson.json").write_text("{")
    (root / "empty.json").write_text("")
    (root / "list.json").write_text("[]")
    (root / "wrongformat.json").write_text(
        json.dumps({"format": "something-else", "version": 1, "candidates": []})
    )
    (root / "nonempty").mkdir()
    (root / "nonempty" / "keep.txt").write_text("do not lose me\n")
    (root / "badconfig").mkdir()
    (root / "badconfig" / "config.json").write_text("{not json")
    (root / "unsupported").mkdir()
    (root / "unsupported" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (root / "broken.yaml").write_text("task: [unclosed\n")
    for name, text in TOML_FILES.items():
        (root / name).write_text(text)
    _task_files(root)
    _small_embedding(root)
    if slow:
        _slow_fixtures(root)


def _task_files(root: Path) -> None:
    items = [
        {"q": f"{i} plus {i} is", "choices": [f" {2 * i}", f" {2 * i + 1}"], "label": 0} for i in range(4)
    ]
    data = root / "task.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    common = (
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\nmetric_list:\n  - metric: acc\n'
    )
    (root / "task.yaml").write_text('task: nc_doubling\ndoc_to_text: "{{q}}"\n' + common)
    (root / "missingfield.yaml").write_text('task: nc_missing\ndoc_to_text: "{{question}}"\n' + common)


def _small_embedding(root: Path) -> None:
    """The tiny teacher's config with fewer embedding rows than its tokenizer has tokens."""
    import shutil

    from minitron.model.load import ASSETS_DIR

    path = root / "small-embedding"
    shutil.copytree(ASSETS_DIR / "tiny", path)
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((path / "config.json").read_text())
    rows = config["vocab_size"] // 2
    config["vocab_size"] = rows
    (path / "config.json").write_text(json.dumps(config))
    tensors = load_file(path / "model.safetensors")
    for name, tensor in tensors.items():
        if tensor.dim() == 2 and tensor.shape[0] == rows * 2:
            tensors[name] = tensor[:rows].contiguous()
    save_file({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in tensors.items()},
              path / "model.safetensors", metadata={"format": "pt"})  # fmt: skip


def _slow_fixtures(root: Path) -> None:
    from typer.testing import CliRunner

    from minitron.cli import app

    def must(*argv: str) -> None:
        result = CliRunner().invoke(app, list(argv))
        if result.exit_code:
            raise SystemExit(f"fixture {' '.join(argv)} failed:\n{result.output}")

    must("score", "tiny", "--samples", "4", "--seq-len", "32", "--batch-size", "4", "--depth-mode", "one-shot",
         "--out", "scores.safetensors")  # fmt: skip
    must("search", "tiny", "--scores", "scores.safetensors", "--budget", "20MiB", "--context", "8k", "--layers",
         "56", "--granularity", "8", "--no-eval", "--out", "search")  # fmt: skip
    (root / "candidates.json").write_text((root / "search" / "candidates.json").read_text())
    must("search", "nemotron-nano-12b-v2-base", "--budget", "22GiB", "--layers", "56", "--no-eval", "--top", "3",
         "--out", "search12b")  # fmt: skip
    (root / "other-model.json").write_text((root / "search12b" / "candidates.json").read_text())
    must(
        "prune",
        "tiny",
        "--scores",
        "scores.safetensors",
        "--candidate",
        "candidates.json",
        "--out",
        "student",
    )


# ---- running -----------------------------------------------------------------------------------------
def judge(result, elapsed: float, stopped: bool) -> tuple[str, str]:
    """('ok' | 'traceback' | 'accepted' | 'slow' | 'unclear', detail)."""
    if stopped:
        return "slow", f"still working after {elapsed:.0f} s"
    exc = result.exception
    output = result.output or ""
    stderr = _stderr(result)
    if exc is not None and not isinstance(exc, SystemExit):
        return "traceback", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if "Traceback (most recent call last)" in output:
        return "traceback", "traceback printed"
    if result.exit_code == 0:
        return "accepted", output.strip().splitlines()[-1][:120] if output.strip() else "(no output)"
    errors = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    if len(errors) != 1:
        return "unclear", f"{len(errors)} error lines: {stderr.strip()[-200:]!r}"
    return "ok", errors[0][:160]


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


def run_case(case: Case, timeout_s: float | None):
    """(verdict, detail), seconds. `timeout_s` None sets no alarm, so the verdict never depends on the
    machine's speed (the test's way); a wrongly accepted input then runs to its end."""
    from typer.testing import CliRunner

    from minitron.cli import app

    def alarm(*_):
        raise Stopped

    previous = signal.signal(signal.SIGALRM, alarm)
    if timeout_s is not None:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    start = time.perf_counter()
    stopped = False
    try:
        result = CliRunner().invoke(app, list(case.argv), catch_exceptions=True)
    except Stopped:
        result, stopped = None, True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    return judge(result, elapsed, stopped), elapsed


def run_battery(selected: list[Case], root: Path, timeout_s: float, echo=print) -> list[dict]:
    rows = []
    with contextlib.chdir(root):
        for i, case in enumerate(selected, 1):
            (verdict, detail), elapsed = run_case(case, timeout_s)
            rows.append({"argv": list(case.argv), "why": case.why, "verdict": verdict, "detail": detail,
                         "seconds": round(elapsed, 2)})  # fmt: skip
            if verdict != "ok":
                echo(f"[{i}/{len(selected)}] {verdict}: minitron {' '.join(case.argv)} -> {detail}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=(FAST, SLOW), help="only the fast inputs (no fixtures) or the slow ones"
    )
    parser.add_argument("--command", help="only this command's inputs")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before an input counts as slow")
    parser.add_argument("--json", help="write the verdicts here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    selected = [c for c in cases() if (args.only is None or c.kind == args.only)
                and (args.command is None or c.command == args.command)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="minitron-bad-") as tmp:
        root = Path(tmp)
        make_scratch(root, slow=any(c.kind == SLOW for c in selected))
        rows = run_battery(selected, root, args.timeout)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    print(json.dumps({"inputs": len(rows), **counts}))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    sys.exit(0 if counts.get("ok", 0) == len(rows) else 1)


if __name__ == "__main__":
    main()
