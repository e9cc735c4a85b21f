"""Training checkpoints: model (safetensors) + config (JSON) + optimiser/scheduler/RNG state.

The trainer state is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers: no pickled code is ever executed.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from ..model.checkpoint import CheckpointError, save_model
from ..model.rundir import RunDir

STATE = "trainer_state.pt"



def save_training_checkpoint(run_dir: Path, step: int, model, cfg, optimizer, scheduler, scaler=None) -> Path:
    """Atomically write checkpoints/step_XXXXXX with weights, config and the state needed to resume."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    extra = {STATE: lambda path: torch.save(state, path)}
    return save_model(model, cfg, RunDir(run_dir).step(step), extra_files=extra)


def load_training_state(ckpt: Path, optimizer, scheduler, scaler=None) -> int:
    """Restore optimiser, scheduler and RNG state from a checkpoint dir; return the step it was taken at."""
    try:
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt}: no {STATE}; it holds weights only and cannot be resumed") from None
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise CheckpointError(f"{ckpt / STATE}: unreadable trainer state ({type(e).__name__})") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if "python_rng" in state:
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    return int(state["step"])


def find_resume(run_dir: Path, resume: str) -> Path:
    """``latest`` -> the newest checkpoint of ``run_dir``; otherwise a checkpoint path."""
    if resume == "latest":
        ckpt = RunDir(run_dir).latest()
        if ckpt is None:
            raise CheckpointError(f"--resume latest: no checkpoints in {RunDir(run_dir).checkpoints_dir}")
        return ckpt
    p = Path(resume)
    if not (p / STATE).is_file():
        raise CheckpointError(f"--resume {resume}: not a training checkpoint (no {STATE})")
    return p


def prune_checkpoints(run_dir: Path, keep_steps: set[int], keep_last: int) -> None:
    """Delete step checkpoints except ``keep_steps`` and the newest ``keep_last``."""
    ckpts = RunDir(run_dir).step_dirs()
    recent = {d for _, d in ckpts[-keep_last:]} if keep_last > 0 else set()
    for step, d in ckpts:
        if d not in recent and step not in keep_steps:
            shutil.rmtree(d, ignore_errors=True)
