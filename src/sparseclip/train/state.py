"""Training checkpoints: model (safetensors) + config (JSON) + optimiser/scheduler/RNG state, and the
:class:`Checkpointer` that decides when the trainer saves, keeps and loads them and writes ``final/``.

The trainer state is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers: no pickled code is ever executed.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch

from ..config import Config
from ..model.checkpoint import CheckpointError, load_weights, save_model
from ..model.rundir import CONFIG, RunDir
from .distributed import barrier, unwrap
from .guard import check_weights

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


def checkpoint_steps(cfg: Config) -> tuple[set[int], set[int]]:
    """``(save, keep)``: steps after which a checkpoint is written (the fractions, every ``ckpt_every``, the
    last) and those never pruned (the fractions and the last: training dynamics reads them). The others
    (``ckpt_every``, an interrupt's) are pruned to the newest ``train.keep_last``."""
    steps = cfg.train.steps
    keep = {max(1, round(f * steps)) for f in cfg.train.ckpt_fractions} | {steps}
    save = set(keep)
    if cfg.train.ckpt_every > 0:
        save |= set(range(cfg.train.ckpt_every, steps + 1, cfg.train.ckpt_every))
    return save, keep


def check_resume_config(ckpt: Path, cfg: Config) -> None:
    """Refuse to resume a checkpoint trained with another model or loss (one line naming the differences)."""
    from ..config import fingerprint

    try:
        saved = fingerprint(json.loads((ckpt / CONFIG).read_text()))
    except (OSError, ValueError):
        return  # load_weights reports an unreadable checkpoint
    now = fingerprint(cfg.to_dict())
    diffs = []
    for section in ("model", "loss"):
        a, b = _flat(saved.get(section, {}), section), _flat(now.get(section, {}), section)
        diffs += [f"{k}: {a.get(k, 'default')} -> {b.get(k, 'default')}" for k in sorted(set(a) | set(b))
                  if a.get(k) != b.get(k)]
    if diffs:
        raise ValueError(f"--resume {ckpt}: it was trained with a different configuration ({'; '.join(diffs[:4])}); "
                         "resume with the same settings, or start a new run")


def _flat(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}.{k}")
        else:
            out[f"{prefix}.{k}"] = v
    return out


class Checkpointer:
    """The run's checkpoints: :meth:`resume` loads one (weights, optimiser, schedule, RNG), :meth:`after_step`
    saves at the steps :func:`checkpoint_steps` names (or when a signal stops the run) and prunes the others to
    ``train.keep_last``, :meth:`final` writes ``final/``. Weights are checked finite before each save; rank 0
    writes, every rank waits for it."""

    def __init__(self, cfg: Config, is_main: bool, model, optimizer, scheduler, scaler=None) -> None:
        self.cfg, self.is_main, self.run_dir = cfg, is_main, Path(cfg.train.output_dir)
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.save_at, self.keep = checkpoint_steps(cfg)

    def resume(self, resume: str | None) -> int:
        """Load ``resume`` (``latest`` or a checkpoint path; a different model or loss refused); the step to
        continue from (0 without one)."""
        if not resume:
            return 0
        ckpt = find_resume(self.run_dir, resume)
        check_resume_config(ckpt, self.cfg)
        load_weights(self.model, ckpt)
        return load_training_state(ckpt, self.optimizer, self.scheduler, self.scaler)

    def after_step(self, done: int, stopping: bool) -> None:
        """Save (and prune) after step ``done`` where due, or when the run is ``stopping`` before its end."""
        if not (done in self.save_at or (stopping and done < self.cfg.train.steps)):
            return
        check_weights(self.model, f"after step {done}: stopped before saving them")
        if self.is_main:
            save_training_checkpoint(self.run_dir, done, self.model, self.cfg, self.optimizer, self.scheduler,
                                     self.scaler)
            prune_checkpoints(self.run_dir, keep_steps=self.keep, keep_last=self.cfg.train.keep_last)
        barrier()

    def final(self) -> None:
        """Write ``final/`` (the model and its config), refusing non-finite weights."""
        check_weights(self.model, "at the end of training: final/ not written")
        if self.is_main:
            save_model(unwrap(self.model), self.cfg, RunDir(self.run_dir).final)
