"""The study on the shipped tiny teacher: beats random sampling, prunes, resumes after SIGKILL, two workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paused import paused_command, subprocess_env, wait_for_flag
from search_helpers import HAS_TINY
from tiny_models import row_sizes
from typer.testing import CliRunner

from minitron.cli import app
from minitron.memory import estimate_memory
from minitron.model.load import resolve_model

pytestmark = pytest.mark.skipif(not HAS_TINY, reason="tiny teacher checkpoint not present")
WORKTREE = Path(__file__).parents[2]


def tiny_budget() -> str:
    """Serving memory at 8k of a model with 72% of the teacher's weights (the 12B -> 9B ratio) plus the
    teacher's caches: a budget that asks for the 9B-like compression."""
    arch = resolve_model("tiny").architecture
    mem = estimate_memory(arch, 8192)
    return str(int(0.72 * mem.weights_bytes) + mem.cache_bytes)


def search_args(scores, out, trials, *extra):
    return [
        "search", "tiny", "--scores", str(scores), "--budget", tiny_budget(), "--context", "8k",
        "--granularity", "8", "--layers", "56:62", "--trials", str(trials), "--eval-samples", "4",
        "--seq-len", "64", "--batch-size", "4", "--top-k", "32", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def searched(tiny_scores, tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    result = CliRunner().invoke(app, search_args(tiny_scores, out, 16))
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "candidates.json").read_text())


def test_eval_dtype_is_the_dtype_the_search_evaluates_in(tiny_scores, tmp_path):
    # `minitron plan`'s fix for a search that does not fit names --eval-dtype: it exists and is used.
    objectives = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        result = CliRunner().invoke(app, search_args(tiny_scores, out, 2, "--eval-dtype", dtype))
        assert result.exit_code == 0, result.output
        rows = json.loads((out / "candidates.json").read_text())["candidates"]
        objectives[dtype] = {r["rank"]: r["objective"] for r in rows if r.get("objective") is not None}
    assert objectives["float32"] and objectives["float32"].keys() == objectives["bfloat16"].keys()
    assert objectives["float32"] != objectives["bfloat16"]  # the same candidates, scored in bf16


def test_search_beats_random_feasible_sampling(searched, tiny_scores):
    from minitron.model.load import load_model
    from minitron.prune.target import TargetSpec
    from minitron.search.objective import evaluate, prune_shared
    from minitron.search.run import SearchConfig, _prepare
    from minitron.search.teacher_cache import load_cache

    out, doc = searched
    rows = doc["candidates"]
    assert doc["study"]["evaluated"] == len(rows) == 16
    keys = {
        (tuple(r["drop_blocks"]), r["hidden"], r["ffn"], r["mamba_heads"], r["mamba_head_dim"]) for r in rows
    }
    assert len(keys) == 16  # never the same architecture twice
    assert all(r["spare_bytes"] >= 0 for r in rows)
    config = SearchConfig.from_options(
        model="tiny",
        scores=tiny_scores,
        budget=tiny_budget(),
        context="8k",
        granularity=8,
        layers="56:62",
    )
    _, scores, space, constraint, enumeration = _prepare(config)
    cache = load_cache(Path(doc["objective"]["teacher_cache"]))
    teacher = load_model(resolve_model("tiny"))
    random_best = min(
        evaluate(
            prune_shared(
                teacher, TargetSpec(drop_blocks=p.depth.dropped, **space.pruned_sizes(p.sizes())), scores
            ),
            cache,
        )
        for p in enumeration.sample(16, seed=0)
    )
    best = rows[0]["objective"]
    assert best < random_best, (best, random_best)
    # the table's value is what the objective gives for that candidate now
    r = rows[0]
    spec = TargetSpec(
        drop_blocks=tuple(r["drop_blocks"]),
        **row_sizes(r),
    )
    assert evaluate(prune_shared(teacher, spec, scores), cache) == pytest.approx(best, rel=1e-6)


def test_prune_rank_1_of_the_search_loads_and_generates(searched, tiny_scores, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    out, doc = searched
    pruned_dir = tmp_path / "pruned"
    result = CliRunner().invoke(
        app,
        [
            "prune",
            "tiny",
            "--scores",
            str(tiny_scores),
            "--candidate",
            str(out / "candidates.json"),
            "--rank",
            "1",
            "--out",
            str(pruned_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(pruned_dir, dtype=torch.float32).eval()
    best = doc["candidates"][0]
    assert sum(p.numel() for p in model.parameters()) == best["params"]
    assert (
        model.config.hidden_size == best["hidden"] and len(model.config.layers_block_type) == best["layers"]
    )
    ids = torch.randint(3, model.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    greedy = GenerationConfig(max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        generated = model.generate(ids, generation_config=greedy)
    assert generated.shape == (1, 12) and torch.equal(generated[:, :8], ids)


def test_other_settings_are_refused(searched, tiny_scores):
    out, _ = searched
    result = CliRunner().invoke(app, search_args(tiny_scores, out, 16, "--objective", "lm-loss"))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: the study in") and 'objective (was "kl", now "lm-loss")' in line


def test_storage_that_cannot_be_opened(tiny_scores, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        app, search_args(tiny_scores, tmp_path / "o", 2, "--storage", str(blocker / "s.journal"))
    )
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith(
        "error: --storage: cannot open"
    )
    result = CliRunner().invoke(
        app, search_args(tiny_scores, tmp_path / "o", 2, "--storage", "nosuchdb://x/y")
    )
    assert result.exit_code == 1 and "error: --storage: cannot open nosuchdb://x/y" in result.output


def _journal_trials(out: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="minitron-search", storage=storage).get_trials(deepcopy=False)


def _evaluated(trials):
    return [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("evaluated")]


def test_sigkill_mid_trial_resumes_without_rerunning(tiny_scores, tmp_path):
    out = tmp_path / "killed"
    env = {**subprocess_env(), "PYTHONPATH": str(WORKTREE)}
    argv = search_args(tiny_scores, out, 6, "--seed-trials", "2")
    cmd = [sys.executable, "-m", "minitron", *argv]
    # Stopped as the third evaluation starts: two trials done, a third claimed and running.
    paused = paused_command(argv, "minitron.search.objective:evaluate", 3, tmp_path / "paused", "before")
    proc = subprocess.Popen(
        paused, env=env, cwd=WORKTREE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_flag(tmp_path / "paused", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {t.number: t.datetime_complete for t in _evaluated(_journal_trials(out))}
    assert len(before) == 2 and not (out / "candidates.json").exists()
    done = subprocess.run(cmd, env=env, cwd=WORKTREE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = _journal_trials(out)
    evaluated = _evaluated(trials)
    assert len(evaluated) == 6
    assert {t.number: t.datetime_complete for t in evaluated if t.number in before} == before  # not re-run
    keys = [t.user_attrs["arch"] for t in evaluated]
    assert len(set(keys)) == len(keys)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["arch"] in keys  # the killed trial was retried
    assert not any(t.state.name == "RUNNING" for t in trials)


def test_two_workers_share_one_study(tiny_scores, tmp_path):
    import torch

    out = tmp_path / "two"
    threads = torch.get_num_threads()
    result = CliRunner().invoke(app, search_args(tiny_scores, out, 8, "--workers", "2", "--seed-trials", "2"))
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == threads  # one thread per worker while they ran, then restored
    trials = _journal_trials(out)
    evaluated = _evaluated(trials)
    keys = [t.user_attrs["arch"] for t in evaluated]
    assert "exited with an error" not in result.output  # a worker that hit a storage error says so
    assert 8 <= len(keys) <= 9 and len(set(keys)) == len(keys)
    workers = {t.user_attrs["worker"] for t in evaluated}
    assert len(workers) == 2, workers  # both processes evaluated
    assert not any(t.state.name in ("RUNNING", "FAIL") for t in trials)


def test_throughput_objective_runs_nsga2_and_candidates_carry_the_estimate(
    tiny_scores, tmp_path, monkeypatch
):
    """`--throughput`: two objectives (objective down, estimated decode tokens/s up) under NSGA-II;
    every candidate carries the estimate the study was told."""
    from minitron.memory import get_gpu
    from minitron.search import study as study_module
    from minitron.search.run import SearchConfig, _prepare
    from minitron.search.throughput import decode_tokens_per_s

    samplers = []
    real_make_sampler = study_module.make_sampler

    def spy(*args, **kwargs):
        samplers.append(real_make_sampler(*args, **kwargs))
        return samplers[-1]

    monkeypatch.setattr(study_module, "make_sampler", spy)
    out = tmp_path / "nsga"
    result = CliRunner().invoke(app, search_args(tiny_scores, out, 4, "--throughput", "--seed-trials", "2"))
    assert result.exit_code == 0, result.output
    assert [type(s).__name__ for s in samplers] == ["NSGAIISampler"]
    doc = json.loads((out / "candidates.json").read_text())
    assert doc["study"]["sampler"] == "NSGA-II" and doc["study"]["evaluated"] == 4
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name="minitron-search", storage=storage)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    told = {t.number: t.values for t in _evaluated(study.get_trials(deepcopy=False))}
    _, _, space, constraint, _ = _prepare(
        SearchConfig.from_options(model="tiny", scores=tiny_scores, budget=tiny_budget(), context="8k",
                                  granularity=8, layers="56:62")
    )  # fmt: skip
    a10g = get_gpu("a10g")
    rows = doc["candidates"]
    assert len(rows) == 4 and len({r["decode_tokens_per_s"] for r in rows}) > 1
    for row in rows:
        objective, tokens_per_s = told[row["trial"]]
        assert row["objective"] == objective and row["decode_tokens_per_s"] == pytest.approx(tokens_per_s)
        kept = {"M": row["mamba_blocks"], "-": row["mlp_blocks"], "*": row["attention_blocks"]}
        arch = space.arch(
            next(d for d in space.depth if list(d.dropped) == row["drop_blocks"]),
            **row_sizes(row),
        )
        assert {k: arch.count(k) for k in kept} == kept
        assert (
            tokens_per_s == pytest.approx(decode_tokens_per_s(constraint.memory(arch), a10g))
            and tokens_per_s > 0
        )


def test_dashboard_reads_every_trials_attributes(searched):
    """optuna-dashboard opens the journal with Optuna's storage API; every trial carries what it shows."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    out, doc = searched
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert trials
    teacher = resolve_model("tiny").architecture
    for trial in trials:
        attrs = trial.user_attrs
        assert attrs["params"] == attrs["architecture"]["params"] < teacher.n_params
        assert attrs["architecture"]["blocks"] <= teacher.n_blocks
        assert attrs["memory_bytes"] > 0
        if "infeasible" not in attrs:
            assert attrs["objective"] == trial.values[0]
    # The candidates file and the dashboard tell the same story.
    for row in doc["candidates"][:3]:
        match = [t.user_attrs for t in trials if t.user_attrs.get("objective") == row["objective"]]
        assert any(a["params"] == row["params"] and a["memory_bytes"] == row["memory"]["total_bytes"]
                   for a in match)  # fmt: skip
