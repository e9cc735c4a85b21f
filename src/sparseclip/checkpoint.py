"""Safe, portable model artefacts: weights in safetensors plus the JSON config. Never unpickles.

A *checkpoint dir* holds ``model.safetensors`` and ``config.json``. A *run dir* (what ``sparseclip
train`` writes) holds ``final/`` and ``checkpoints/step_XXXXXX/``; :func:`resolve_checkpoint` finds the
checkpoint a path means.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config, ConfigError, config_from_dict
from .model import SparseCLIP, create_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, described in one line."""


def atomic_dir(final: Path) -> Path:
    """A temporary sibling of ``final`` to write into; call :func:`commit_dir` to publish it."""
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    """Atomically replace ``final`` by ``tmp`` (rename; the old one is removed after)."""
    old = None
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_model(model: SparseCLIP, cfg: Config, directory: str | Path,
               extra_files: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(final)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "library": "sparseclip"})
    (tmp / CONFIG).write_text(cfg.to_json())
    for name, writer in (extra_files or {}).items():
        writer(tmp / name)
    commit_dir(tmp, final)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint dir that ``path`` (a checkpoint dir or a run dir) refers to."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no such checkpoint or run: {path}")
    if p.is_file():
        if p.name == WEIGHTS:
            return p.parent
        raise CheckpointError(f"{path}: expected a checkpoint directory (with {WEIGHTS} and {CONFIG})")
    if (p / WEIGHTS).is_file():
        return p
    if (p / "final" / WEIGHTS).is_file():
        return p / "final"
    latest = latest_checkpoint(p)
    if latest is not None:
        return latest
    raise CheckpointError(f"{path}: no {WEIGHTS} here, and no final/ or checkpoints/ inside")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step_XXXXXX`` of a run, or None."""
    ckpts = Path(run_dir) / "checkpoints"
    if not ckpts.is_dir():
        return None
    steps = sorted(d for d in ckpts.iterdir() if d.is_dir() and d.name.startswith("step_")
                   and not d.name.endswith((".tmp", ".old")) and (d / WEIGHTS).is_file())
    return steps[-1] if steps else None


def load_config_file(ckpt: Path) -> Config:
    try:
        data = json.loads((ckpt / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt}: missing {CONFIG}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt / CONFIG}: not valid JSON ({e.msg})") from None
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise CheckpointError(f"{ckpt / CONFIG}: {e}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SparseCLIP, Config]:
    """Load a model from a checkpoint dir or a run dir; returns ``(model in eval mode, config)``."""
    ckpt = resolve_checkpoint(path)
    cfg = load_config_file(ckpt)
    model = create_model(cfg.model)
    try:
        state = load_file(str(ckpt / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{ckpt / WEIGHTS}: not a readable safetensors file ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise CheckpointError(f"{ckpt}: weights do not match its config.json ({detail})")
    return model.to(device).eval(), cfg
