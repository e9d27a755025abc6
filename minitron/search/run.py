"""`minitron search`: SearchConfig -> run(): space, budget, (study | proxy ranking), outputs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitron.errors import MinitronError
from minitron.runs import file_digest
from minitron.search.config import SearchConfig, parse_params

FORMAT = "minitron-candidates"
FORMAT_VERSION = 1


@dataclass
class SearchResult:
    document: dict[str, Any]
    written: list[Path]


def _prepare(config: SearchConfig):
    """Everything a worker needs that does not need torch: source, scores, space, constraint, feasible set."""
    from minitron.model.load import resolve_model
    from minitron.search.frontier import Constraint, enumerate_feasible
    from minitron.search.space import build_space

    source = resolve_model(config.model)
    arch = source.architecture
    scores = None
    if config.scores is not None:
        from minitron.importance.scores import load_scores

        scores = load_scores(config.scores)
        scores.check_matches(arch, source.fingerprint() if source.has_weights else None)
    order = [int(i) for i in scores.get("depth.order").tolist()] if scores and scores.has_depth() else None
    space = build_space(arch, config.axes, config.granularity, config.max_prune_, order, config.drop_blocks)
    constraint = Constraint(
        config.serving,
        min_params=parse_params(config.min_params, "--min-params", arch.n_params),
        max_params=parse_params(config.max_params, "--max-params", arch.n_params),
        min_active_params=parse_params(config.min_active_params, "--min-active-params", arch.n_active_params),
        max_active_params=parse_params(config.max_active_params, "--max-active-params", arch.n_active_params),
    )
    enumeration = enumerate_feasible(space, constraint)
    return source, scores, space, constraint, enumeration


def _proxy(space, scores):
    from minitron.search.frontier import params_proxy

    if scores is not None and scores.has_width():
        from minitron.search.proxy import importance_proxy

        return importance_proxy(space, scores), "importance kept"
    return params_proxy(space), "params"


def run(config: SearchConfig, console=None) -> SearchResult:
    from rich.console import Console

    from minitron.device import resolve_device

    resolve_device(config.device)  # a device this machine lacks: one line, before any work
    # The table has 13 columns: when stdout is not a terminal (logs, pipes) do not squeeze it into 80.
    console = console or Console(width=None if sys.stdout.isatty() else 180)
    source, scores, space, constraint, enumeration = _prepare(config)
    evaluate = config.evaluate
    if evaluate and not source.has_weights:
        print(f"note: '{source.name}' has no weights here; ranking by a weight-free proxy", file=sys.stderr)
        evaluate = False
    if (
        evaluate
        and scores is None
        and any(len(v) > 1 or v[0] != getattr(space.source, a) for a, v in space.width.items())
    ):
        raise MinitronError(
            "search with weights needs --scores (run `minitron score` first), or pass --no-eval"
        )
    if evaluate and any(not d.known for d in space.depth if sum(d.counts)):
        raise MinitronError(
            "--layers below the source needs a depth order to build candidates: --scores with depth scores, "
            "or --drop-blocks"
        )
    proxy, proxy_name = _proxy(space, scores)
    frontier = enumeration.frontier()
    header = _header(config, source, space, constraint, enumeration, scores)
    if not evaluate:
        from minitron.search.frontier import rank_by
        from minitron.search.report import candidate_row, rank_rows

        ranked = rank_by(frontier, proxy)[: config.top]
        rows = [candidate_row(p, space, constraint, config.gpu_, None, value) for p, value in ranked]
        document = {**header, "ranked_by": f"proxy: {proxy_name}", "candidates": rank_rows(rows, "proxy")}
    else:
        from minitron.plan.oom import explain_out_of_memory, model_plan

        plan = lambda: model_plan("search", source.architecture, config.device, seq_len=config.seq_len,  # noqa: E731
                                  batch_size=config.batch_size, eval_dtype=config.eval_dtype,
                                  eval_samples=config.eval_samples, top_k=config.top_k)  # fmt: skip
        with explain_out_of_memory("search", plan):
            document = {
                **header,
                **_search(config, source, scores, space, constraint, enumeration, proxy, console),
            }
    config.out.mkdir(parents=True, exist_ok=True)
    from minitron.search.report import candidates_table, write_outputs

    written = write_outputs(config.out, document, constraint.usable_bytes)
    if config.progress:
        console.print(candidates_table(document))
        console.print(f"wrote {', '.join(str(p) for p in written)}")
    return SearchResult(document=document, written=written)


def _header(config, source, space, constraint, enumeration, scores) -> dict[str, Any]:
    from minitron import __version__

    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "minitron_version": __version__,
        "source": {
            "model": source.name,
            "fingerprint": source.fingerprint(),
            "architecture": source.architecture.summary(),
        },
        "scores": None
        if config.scores is None
        else {"path": str(Path(config.scores).resolve()), "sha256": file_digest(config.scores, 16)},
        "budget": config.serving.to_dict()["budget"],
        "serving": config.serving.to_dict(),
        "constraint": constraint.to_dict(),
        "space": space.describe(),
        "feasible": enumeration.feasible,
        "frontier": len(enumeration.combinations),
        "throughput": {
            "gpu": config.gpu_name,
            "bandwidth_bytes_per_s": config.gpu_.bandwidth_bytes_per_s,
            "formula": "batch x bandwidth / (weights + kv + 2 x (ssm + conv))",
        },
    }


def study_settings(config: SearchConfig, source, space, constraint, cache_key: str) -> dict[str, Any]:
    """What a study's results depend on: resuming under other settings is refused."""
    return {
        "model": source.fingerprint(),
        "scores": file_digest(config.scores, 16) if config.scores else None,
        "space": space.describe(),
        "constraint": constraint.to_dict(),
        "objective": config.objective,
        "throughput_objective": config.throughput_objective,
        "gpu": config.gpu_name,
        "teacher_cache": cache_key,
        "seed": config.seed,
    }


def _teacher_cache(config: SearchConfig, source, model):
    """Load the study's teacher cache, building it first when missing (the teacher runs once)."""
    from minitron.data import DataSpec, describe, token_batches
    from minitron.model.load import load_tokenizer
    from minitron.search.teacher_cache import build_cache, cache_key, cache_path, load_cache

    spec = DataSpec.of_command(config, config.eval_samples, "heldout")
    key = cache_key(source.fingerprint(), describe(spec), config.top_k, config.eval_dtype)
    path = cache_path(config.out, key)
    if not path.is_file():
        if model is None:
            raise MinitronError(f"teacher cache {path} is missing")
        batches = list(token_batches(spec, load_tokenizer(source, "minitron search")))
        header = {
            "key": key,
            "model": source.name,
            "fingerprint": source.fingerprint(),
            "data": describe(spec),
        }
        build_cache(model, batches, config.top_k, path, header)
    return load_cache(path), key


def _load(config: SearchConfig, source):
    import torch

    from minitron.device import resolve_device
    from minitron.model.load import load_model

    torch.manual_seed(config.seed)
    device = str(resolve_device(config.device))
    return load_model(source, dtype=config.eval_dtype, device=device, command="minitron search")


def _evaluator(config, model, scores, space, constraint, cache):
    from minitron.prune.target import TargetSpec
    from minitron.search.objective import evaluate, prune_shared
    from minitron.search.throughput import decode_tokens_per_s

    def run_point(point) -> list[float]:
        spec = TargetSpec(drop_blocks=point.depth.dropped or (), **space.pruned_sizes(point.sizes()))
        value = evaluate(prune_shared(model, spec, scores), cache, config.objective)
        if not config.throughput_objective:
            return [value]
        mem = constraint.memory(space.arch(point.depth, **point.sizes()))
        return [value, decode_tokens_per_s(mem, config.gpu_)]

    return run_point


def _open(config, source, space, constraint, cache_key, worker: int, storage=None):
    from minitron.search.study import Claims, make_sampler, open_storage, open_study

    storage = storage or open_storage(config.storage, config.out)
    sampler = make_sampler(config.seed, config.throughput_objective, worker)
    where = config.storage or str(config.out)
    study = open_study(storage, study_settings(config, source, space, constraint, cache_key),
                       config.throughput_objective, sampler, where)  # fmt: skip
    return study, Claims(config.out / "claims")


def _search(config, source, scores, space, constraint, enumeration, proxy, console) -> dict[str, Any]:
    import multiprocessing

    from minitron.device import resolve_device
    from minitron.progress import progress_bar
    from minitron.search.frontier import rank_by
    from minitron.search.study import (
        TrialSpace,
        evaluated_trials,
        open_storage,
        recover_dead_trials,
        run_worker,
    )

    resolve_device(config.device)  # a device this machine lacks: one line, before anything is written
    # A database URL that cannot be opened fails here, before --out and the teacher cache are written.
    storage = open_storage(config.storage, config.out) if config.storage and "://" in config.storage else None
    config.out.mkdir(parents=True, exist_ok=True)
    model = _load(config, source)
    cache, key = _teacher_cache(config, source, model)
    study, claims = _open(config, source, space, constraint, key, worker=0, storage=storage)
    trial_space = TrialSpace(space)
    recover_dead_trials(study, trial_space)
    # The largest candidates that still fit, best by the proxy, go first.
    for point, _ in rank_by(enumeration.frontier(), proxy)[: config.seed_trials]:
        study.enqueue_trial(trial_space.params(point), skip_if_exists=True)
    children, ready = [], []
    import torch

    threads = torch.get_num_threads()
    if config.workers > 1:
        # One thread per worker process, this one included (worker_main does the same): N workers
        # for N cores, and no OpenMP team of this process spinning against the others. Restored
        # below for the stages `minitron run` runs next in this process.
        torch.set_num_threads(1)
    ctx = multiprocessing.get_context("spawn")
    for w in range(1, config.workers):
        ready.append(ctx.Event())
        child = ctx.Process(target=worker_main, args=(config, w, ready[-1]), daemon=False)
        child.start()
        children.append(child)
    # Start together: a worker that is still importing torch would otherwise find the study done.
    for event, child in zip(ready, children, strict=True):
        while not event.wait(timeout=1) and child.is_alive():
            pass
    run_point = _evaluator(config, model, scores, space, constraint, cache)
    target = min(config.trials, enumeration.feasible)
    try:
        done = min(len(evaluated_trials(study)), target)
        with progress_bar("trials", target, config.progress, completed=done) as bar:
            result = run_worker(
                study, trial_space, constraint, claims, run_point, config.trials, enumeration.feasible,
                config.timeout_s, on_trial=lambda n: bar.update(completed=min(n, target)),
            )  # fmt: skip
    finally:
        for child in children:
            child.join()
        torch.set_num_threads(threads)
    failed = [c.exitcode for c in children if c.exitcode]
    if failed:
        print(f"warning: {len(failed)} worker(s) exited with an error", file=sys.stderr)
    return _study_rows(config, study, space, constraint, proxy, result, cache)


def _study_rows(config, study, space, constraint, proxy, result, cache) -> dict[str, Any]:
    from minitron.search.report import candidate_row, rank_rows
    from minitron.search.study import evaluated_trials, point_from_record

    rows = []
    for trial in evaluated_trials(study):
        point = point_from_record(trial.user_attrs["point"])
        rows.append(
            candidate_row(point, space, constraint, config.gpu_, trial.values[0], proxy(point), trial.number)
        )
    ranked = rank_rows(rows, "objective")
    return {
        "ranked_by": "objective",
        "objective": {
            "name": config.objective,
            "meaning": "KL(teacher || candidate) per token, teacher top-k + rest"
            if config.objective == "kl"
            else "next-token cross-entropy per token",
            "top_k": cache.top_k,
            "eval_tokens": cache.tokens,
            "teacher_cache": str(cache.path),
        },
        "study": {
            "storage": config.storage or str(config.out / "study.journal"),
            "trials": len(study.trials),
            "evaluated": len(rows),
            "infeasible_proposals": result.infeasible,
            "duplicate_proposals": result.duplicates,
            "stopped": result.stopped,
            "sampler": "NSGA-II" if config.throughput_objective else "TPE (multivariate, constant liar)",
        },
        "candidates": ranked[: config.top],
    }


def worker_main(config: SearchConfig, worker: int, ready=None) -> None:
    """A spawned worker: the same study, its own sampler stream, no progress bar."""
    import torch

    from minitron.search.study import TrialSpace, run_worker

    torch.set_num_threads(1)
    try:
        source, scores, space, constraint, enumeration = _prepare(config)
        model = _load(config, source)
        cache, key = _teacher_cache(config, source, None)
        study, claims = _open(config, source, space, constraint, key, worker)
        run_point = _evaluator(config, model, scores, space, constraint, cache)
        if ready is not None:
            ready.set()
        run_worker(study, TrialSpace(space), constraint, claims, run_point, config.trials, enumeration.feasible,
                   config.timeout_s)  # fmt: skip
    except MinitronError as e:
        print(f"error: worker {worker}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
