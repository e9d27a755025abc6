"""Training checkpoints: everything needed to continue a run exactly where it stopped.

Layout under the run directory:

    checkpoints/step-00000100/state.pt   model, optimizer, scheduler, RNG states, data position
    checkpoints/step-00000100/sharded/   under FSDP2: model and optimizer shards (torch.distributed.checkpoint)
    checkpoints/latest                   name of the newest complete checkpoint

A checkpoint is written to a temporary directory and renamed into place, and `latest` is replaced
atomically afterwards, so a crash at any moment leaves the previous checkpoint usable. Older
checkpoints are deleted once a newer one is complete.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from minitron.atomic import make_temp_dir, replace_dir, write_text
from minitron.errors import MinitronError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE = "state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], sharded=None) -> Path:
    """Write `state` as the checkpoint of `step`, point `latest` at it, drop older ones.

    `sharded` = (FSDP2 model, optimizer): every rank calls this; each writes its shards with
    torch.distributed.checkpoint into the same temporary directory, rank 0 writes `state` and
    publishes the directory once all shards are in.
    """
    if sharded is not None:
        return _save_sharded(run_dir, step, state, *sharded)
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = make_temp_dir(prefix=f".{name}-", dir=root)
    return _publish(root, name, tmp, state)


def _publish(root: Path, name: str, tmp: Path, state: dict[str, Any]) -> Path:
    final = root / name
    with replace_dir(tmp, final):
        torch.save(state, tmp / STATE)
    write_text(root / LATEST, name + "\n")
    for old in root.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    path = run_dir / CHECKPOINTS / pointer.read_text().strip()
    if not (path / STATE).exists():
        raise MinitronError(f"{pointer} names {path.name}, which is missing; the run directory is damaged")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / STATE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise MinitronError(f"{path / STATE}: cannot read checkpoint ({e})") from None


def _save_sharded(run_dir: Path, step: int, state: dict[str, Any], model, optimizer) -> Path:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = run_dir / CHECKPOINTS
    name = f"step-{step:08d}"
    tmp = root / f".{name}-sharded"  # one name every rank can derive
    if dist.get_rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=tmp / "sharded")
    dist.barrier()
    final = root / name
    if dist.get_rank() == 0:
        _publish(root, name, tmp, state)
    dist.barrier()
    return final


def load_sharded(path: Path, model, optimizer) -> None:
    """Load the FSDP2 shards of checkpoint `path` into `model` and `optimizer` (every rank calls this)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if not (path / "sharded").is_dir():
        raise MinitronError(f"{path}: holds no sharded (FSDP2) state; resume it without --fsdp")
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=path / "sharded")
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
