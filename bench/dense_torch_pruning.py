"""minitron against Torch-Pruning on the same small trained dense Llama, at the same parameter count.

    pip install -e '.[bench]'        # torch-pruning==1.6.1
    nice python bench/dense_torch_pruning.py [--train-steps 800] [--distill-steps 100]

1. Teacher: a LlamaForCausalLM (hidden 256, 6 layers, FFN 768, 8 query / 2 KV heads of dim 32,
   untied embeddings, the shipped tiny teacher's 4096-token tokenizer) trained from scratch on the
   train split of the built-in corpus by minitron's own trainer. Cached under bench/.cache/, so a
   rerun skips training (and an interrupted training resumes).
2. Torch-Pruning, following its LLM example (examples/LLMs/prune_llm.py): local width pruning with
   one ratio for hidden channels, FFN neurons and query heads (heads ranked inside each KV group, KV
   heads and head dims kept, lm_head outputs kept), `round_to=4`; then the config fields are updated
   so the result saves and reloads with from_pretrained. Two importance criteria: the example's
   weight magnitude (GroupMagnitudeImportance, no data) and first-order Taylor (GroupTaylorImportance)
   on the same calibration batches minitron scores on.
3. minitron: `score` (activation-based width importance, no depth) then `prune` to exactly the
   architecture Torch-Pruning produced, so the parameter counts are equal.
4. Every student is evaluated on the same held-out batches, then distilled by
   `minitron distill TEACHER STUDENT` with identical settings and seed, and evaluated again.

Timings are wall-clock in this process (load, importance, slicing and saving included for both tools);
the machine is shared, so compare the tools within one run. Results go to --out (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))  # make_tiny: how the toy teachers are trained

# The teacher. head_dim 32 x 8 query heads = hidden; 2 KV heads, so query heads go in steps of 2.
TEACHER_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
SEQ_LEN = 256
BATCH_SIZE = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=str(HERE / ".cache" / "dense_torch_pruning"),
                        help="teacher run, pruned and distilled students (git-ignored)")  # fmt: skip
    parser.add_argument("--out", default=str(HERE / "dense_torch_pruning.json"), help="results JSON")
    parser.add_argument(
        "--train-steps", type=int, default=800, help="teacher training steps (8 x 256 tokens)"
    )
    parser.add_argument("--train-lr", type=float, default=2e-3)
    parser.add_argument("--teacher-only", action="store_true", help="train (or resume) the teacher and stop")
    parser.add_argument("--pruning-ratio", type=float, default=0.25,
                        help="Torch-Pruning's width ratio (hidden, FFN, query heads)")  # fmt: skip
    parser.add_argument("--calib-samples", type=int, default=64, help="calibration sequences (both tools)")
    parser.add_argument("--heldout-samples", type=int, default=64, help="held-out sequences for every loss")
    parser.add_argument("--distill-steps", type=int, default=100)
    parser.add_argument("--distill-lr", type=float, default=1e-3)
    parser.add_argument(
        "--distill-seed", type=int, default=0, help="data order and torch seed of every KD run"
    )
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


# ---- teacher -------------------------------------------------------------------------------------


def train_teacher(args, cache: Path) -> Path:
    """Train (or resume, or reuse) the teacher; returns its checkpoint directory."""
    from make_tiny import pretrain_config

    from minitron.distill.checkpoint import latest_checkpoint
    from minitron.distill.trainer import train
    from minitron.model.arch import Architecture
    from minitron.model.load import build_model, load_tokenizer, resolve_model

    run = cache / "teacher"
    final = run / "final"
    if (final / "config.json").exists():
        return final
    arch = Architecture.from_hf_config(TEACHER_CONFIG)
    tokenizer = load_tokenizer(resolve_model("tiny"))
    arch = dataclasses.replace(arch, vocab=len(tokenizer))
    resume = latest_checkpoint(run) is not None
    config = pretrain_config("dense-teacher", str(run), args.train_steps, args.train_lr, BATCH_SIZE, "bf16", resume,
                             warmup_steps=50, eval_batches=4, save_every=50)  # fmt: skip
    train(config, model=build_model(arch, seed=0), tokenizer=tokenizer,
          provenance={"script": "bench/dense_torch_pruning.py"})  # fmt: skip
    return final


# ---- data and evaluation -------------------------------------------------------------------------


def batches(split: str, samples: int) -> list:
    """The same packed (8, 256) batches every time: minitron's calibration or held-out split of the corpus."""
    from minitron.data import DataSpec, token_batches
    from minitron.model.load import load_tokenizer, resolve_model

    spec = DataSpec(seq_len=SEQ_LEN, batch_size=BATCH_SIZE, samples=samples, split=split)
    return list(token_batches(spec, load_tokenizer(resolve_model("tiny"))))


def load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sequence_losses(model, heldout: list) -> list[float]:
    """Mean next-token cross-entropy (nats/token) of each held-out sequence (all are SEQ_LEN long)."""
    import torch

    losses = []
    with torch.no_grad():
        for ids in heldout:
            logits = model(input_ids=ids).logits[:, :-1]
            per_token = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
            )
            losses += per_token.reshape(ids.shape[0], -1).mean(1).tolist()
    return losses


def paired(ours: list[float], theirs: list[float]) -> dict:
    """theirs - ours over the same sequences: mean, its standard error (sequences as the unit) and
    how many sequences ours predicts better. Held-out evaluation noise only, not training noise."""
    diffs = [t - o for o, t in zip(ours, theirs, strict=True)]
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
    return {"mean": mean, "se": se, "ours_better": sum(d > 0 for d in diffs), "sequences": len(diffs)}


# ---- the two tools -------------------------------------------------------------------------------


def prune_minitron(teacher: Path, out: Path, target: dict, calib_samples: int) -> dict:
    """`minitron score --depth none` then `minitron prune --hidden --ffn --attn-heads`, in process."""
    from minitron.importance.run import ScoreConfig
    from minitron.importance.run import run as score
    from minitron.prune.run import PruneConfig
    from minitron.prune.run import run as prune
    from minitron.prune.target import TargetSpec

    start = time.perf_counter()
    score(ScoreConfig(model=str(teacher), out=out.with_name(out.name + "-scores.safetensors"),
                      samples=calib_samples, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, depth="none",
                      device="cpu", progress=False, report=False))  # fmt: skip
    scored = time.perf_counter()
    prune(PruneConfig(model=str(teacher), out=out, scores=out.with_name(out.name + "-scores.safetensors"),
                      target=TargetSpec(**target), overwrite=True))  # fmt: skip
    done = time.perf_counter()
    return {"importance_s": scored - start, "slice_s": done - scored, "prune_s": done - start}


class unwrapped_rotary:
    """Run Torch-Pruning's trace with rotary embeddings as the identity.

    Torch-Pruning 1.6.1 never finishes building the pruning groups of q_proj/k_proj through
    transformers 5.x's `rotate_half` (slice + cat of each head's halves), the hang reported for
    Qwen3 and GQA models in VainF/Torch-Pruning#527. Rotary mixes channels only inside one head, and
    whole heads are pruned here (`prune_head_dims=False`), so the trace without it yields the same
    groups; the pruned model runs the real rotary embedding.
    """

    def __init__(self, model):
        self.module = sys.modules[type(model).__module__]

    def __enter__(self):
        self.real = self.module.apply_rotary_pos_emb
        self.module.apply_rotary_pos_emb = lambda q, k, cos, sin, *args, **kwargs: (q, k)

    def __exit__(self, *exc):
        self.module.apply_rotary_pos_emb = self.real


def prune_torch_pruning(teacher: Path, out: Path, ratio: float, criterion: str, calib: list) -> dict:
    """Torch-Pruning's LLM recipe: one local ratio for hidden, FFN and query heads (inside KV groups)."""
    import torch_pruning as tp
    from transformers import AutoTokenizer

    start = time.perf_counter()
    model = load(teacher)
    config = model.config
    attention = [layer.self_attn for layer in model.model.layers]
    num_heads = {}
    for attn in attention:
        num_heads[attn.q_proj] = config.num_attention_heads
        num_heads[attn.k_proj] = num_heads[attn.v_proj] = config.num_key_value_heads
    if criterion == "magnitude":
        importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean")
    else:  # first-order Taylor |w * dL/dw| on the calibration batches minitron scores on
        importance = tp.importance.GroupTaylorImportance(group_reduction="mean")
        model.zero_grad()
        for ids in calib:
            model(input_ids=ids, labels=ids).loss.backward()
    with unwrapped_rotary(model):
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs=calib[0][:1, :32],
            importance=importance,
            global_pruning=False,
            output_transform=lambda output: output.logits,
            pruning_ratio=ratio,
            ignored_layers=[model.lm_head],
            num_heads=num_heads,
            prune_num_heads=True,
            prune_head_dims=False,
            head_pruning_ratio=ratio,
            round_to=4,
        )
    pruner.step()
    model.zero_grad(set_to_none=True)
    # The config must describe the sliced weights; every layer was pruned alike (local pruning).
    head_dim = config.head_dim
    sizes = {
        "hidden_size": {model.lm_head.in_features},
        "intermediate_size": {layer.mlp.gate_proj.out_features for layer in model.model.layers},
        "num_attention_heads": {a.q_proj.out_features // head_dim for a in attention},
        "num_key_value_heads": {a.k_proj.out_features // head_dim for a in attention},
    }
    for key, values in sizes.items():
        if len(values) != 1:
            raise SystemExit(f"Torch-Pruning left layers with different {key}: {sorted(values)}")
        setattr(config, key, values.pop())
    for attn in attention:
        attn.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
    sliced = time.perf_counter()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(out)
    done = time.perf_counter()
    return {"prune_s": done - start, "slice_s": done - sliced, "in_memory_params": n_params(model),
            "architecture": {"hidden": config.hidden_size, "ffn": config.intermediate_size,
                             "attn_heads": config.num_attention_heads, "kv_heads": config.num_key_value_heads}}  # fmt: skip


# ---- distillation --------------------------------------------------------------------------------


def distill_command(teacher: Path, student: Path, out: Path, args) -> list[str]:
    return [
        sys.executable, "-m", "minitron", "distill", str(teacher), str(student), "--data", "builtin",
        "--steps", str(args.distill_steps), "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH_SIZE),
        "--lr", str(args.distill_lr), "--warmup-steps", str(max(1, args.distill_steps // 10)),
        "--eval-every", "0", "--eval-batches", "1", "--save-every", "0", "--seed", str(args.distill_seed),
        "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def distill(teacher: Path, student: Path, out: Path, args) -> float:
    """`minitron distill` in a subprocess (the user's command); returns its wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(
        distill_command(teacher, student, out, args), check=True, env=env, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


# ---- the run -------------------------------------------------------------------------------------


def cached(path: Path, compute) -> dict:
    """A stage's results, computed once: reruns after an interruption skip finished stages."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def teacher_training(final: Path) -> dict:
    """Steps, tokens, seconds and last held-out loss of the teacher's run (the trainer's result.json)."""
    result = json.loads((final.parent / "result.json").read_text())
    return {k: result[k] for k in ("step", "tokens", "elapsed_s", "eval_loss")}


def main() -> None:
    args = parse_args()
    import torch
    import torch_pruning  # noqa: F401  (imported before any timing, like minitron's modules)
    from make_tiny import unigram_entropy
    from rich.console import Console
    from rich.table import Table

    import minitron.importance.run  # noqa: F401
    import minitron.prune.run  # noqa: F401

    torch.set_num_threads(args.threads)
    # Torch-Pruning warns that it will prune the RMSNorm weights it found outside known layers: wanted.
    warnings.filterwarnings("ignore", module="torch_pruning")
    console = Console(width=150)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    teacher = train_teacher(args, cache)
    if args.teacher_only:
        console.print(f"teacher: {teacher}")
        return

    heldout = batches("heldout", args.heldout_samples)
    calib = batches("train", args.calib_samples)
    teacher_model = load(teacher)
    teacher_losses = sequence_losses(teacher_model, heldout)
    base = {"params": n_params(teacher_model), "heldout_loss": sum(teacher_losses) / len(teacher_losses)}
    del teacher_model
    tag = f"r{args.pruning_ratio}-c{args.calib_samples}"
    students: dict[str, dict] = {}
    for criterion in ("magnitude", "taylor"):
        name = f"torch-pruning ({criterion})"
        out = cache / f"tp-{criterion}-{tag}"
        students[name] = {"path": str(out), **cached(
            out.with_name(out.name + ".json"),
            lambda out=out, criterion=criterion: prune_torch_pruning(teacher, out, args.pruning_ratio, criterion, calib),
        )}  # fmt: skip
    arch = students["torch-pruning (magnitude)"]["architecture"]
    if students["torch-pruning (taylor)"]["architecture"] != arch:
        raise SystemExit("the two Torch-Pruning criteria gave different architectures")
    target = {"hidden": arch["hidden"], "ffn": arch["ffn"], "attn_heads": arch["attn_heads"]}
    out = cache / f"minitron-{tag}"
    students["minitron"] = {"path": str(out), "architecture": arch, **cached(
        out.with_name(out.name + ".json"), lambda: prune_minitron(teacher, out, target, args.calib_samples))}  # fmt: skip

    for name, row in students.items():
        model = load(Path(row["path"]))  # what was saved reloads with from_pretrained
        row["params"] = n_params(model)
        row["pruned_losses"] = sequence_losses(model, heldout)
        del model
        seed = f"-seed{args.distill_seed}" if args.distill_seed else ""
        run = Path(row["path"] + f"-kd{args.distill_steps}{seed}")
        row.update(cached(run.with_name(run.name + ".json"),
                          lambda row=row, run=run: {"distill_s": distill(teacher, Path(row["path"]), run, args)}))  # fmt: skip
        row["distilled_losses"] = sequence_losses(load(run / "final"), heldout)
        for stage in ("pruned", "distilled"):
            row[f"{stage}_loss"] = sum(row[f"{stage}_losses"]) / len(row[f"{stage}_losses"])
        console.print(f"{name}: {row['params']:,} params, held-out {row['pruned_loss']:.4f} -> "
                      f"{row['distilled_loss']:.4f} after {args.distill_steps} KD steps")  # fmt: skip

    reference = {stage: students["minitron"][f"{stage}_losses"] for stage in ("pruned", "distilled")}
    for row in students.values():
        for stage, ours in reference.items():
            row[f"{stage}_vs_minitron"] = paired(ours, row.pop(f"{stage}_losses"))

    results = {
        "teacher": {**base, "path": str(teacher), "config": TEACHER_CONFIG, "train": teacher_training(teacher)},
        "heldout": {"sequences": args.heldout_samples, "seq_len": SEQ_LEN,
                    "tokens": sum(b[:, 1:].numel() for b in heldout), "unigram_entropy": unigram_entropy(heldout)},
        "calibration_sequences": args.calib_samples,
        "pruning_ratio": args.pruning_ratio,
        "distill": {"steps": args.distill_steps, "lr": args.distill_lr, "seed": args.distill_seed,
                    "command": " ".join(distill_command(Path("TEACHER"), Path("STUDENT"), Path("OUT"), args)[1:])},
        "students": students,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch "
                   f"thread(s), torch {torch.__version__}, torch-pruning {version('torch-pruning')}",
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"teacher {base['params']:,} params, held-out loss {base['heldout_loss']:.4f} "
                        f"(unigram {results['heldout']['unigram_entropy']:.4f}); "
                        f"KD {args.distill_steps} steps x {BATCH_SIZE} x {SEQ_LEN} tokens")  # fmt: skip
    for column in ("method", "hidden/ffn/heads", "params", "prune s", "loss pruned", "- minitron's",
                   "loss after KD", "- minitron's", "gap to teacher", "KD s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, row in students.items():
        a = row["architecture"]
        table.add_row(name, f"{a['hidden']}/{a['ffn']}/{a['attn_heads']}",
                      f"{row['params']:,} ({row['params'] / base['params']:.1%})", f"{row['prune_s']:.1f}",
                      f"{row['pruned_loss']:.4f}", versus(row["pruned_vs_minitron"]), f"{row['distilled_loss']:.4f}",
                      versus(row["distilled_vs_minitron"]),
                      f"{row['distilled_loss'] - base['heldout_loss']:+.4f}", f"{row['distill_s']:.0f}")  # fmt: skip
    console.print(table)
    console.print(
        "- minitron's: the row's loss minus minitron's on the same held-out sequences, +- its standard "
        "error over sequences (evaluation noise only)"
    )
    console.print(f"results: {args.out}")


def versus(stats: dict) -> str:
    return "" if stats["mean"] == 0 and stats["se"] == 0 else f"{stats['mean']:+.4f} +- {stats['se']:.4f}"


def version(package: str) -> str:
    from importlib.metadata import version as installed

    return installed(package)


if __name__ == "__main__":
    main()
