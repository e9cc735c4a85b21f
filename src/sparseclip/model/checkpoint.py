"""Safe, portable model artefacts: weights in safetensors plus the JSON config. Never unpickles.

A *checkpoint dir* holds ``model.safetensors`` and ``config.json``. A *run dir* (what ``sparseclip
train`` writes, :class:`~sparseclip.model.rundir.RunDir`) holds ``final/`` and ``checkpoints/step_XXXXXX/``;
:func:`resolve_checkpoint` finds the checkpoint a path means.

A model trained on frozen pretrained towers (``model.towers`` or ``model.pretrained``, ``model.freeze_*``) is
saved small: the heads and the logit scale, plus a reference to the frozen towers (their source and a SHA-256
of their tensors) in the safetensors metadata. Loading rebuilds the towers from that source and refuses them
when their hash differs from the one recorded (the towers changed since training).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .. import weights as shipped
from ..config import Config, ConfigError, config_from_dict
from ..files.atomic import atomic_dir, commit_dir
from . import SparseCLIP, create_model
from .rundir import CONFIG, WEIGHTS, RunDir


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, described in one line."""


def frozen_tower_keys(model: SparseCLIP) -> list[str]:
    """State-dict keys of the towers that are frozen AND come from pretrained weights: what a checkpoint can
    leave out and rebuild from the source."""
    cfg = model.cfg
    if not cfg.has_pretrained_towers:
        return []
    keys = []
    for k in model.state_dict():
        if k.startswith("towers."):
            image = k.startswith("towers.visual.")
            if (cfg.freeze_image if image else cfg.freeze_text):
                keys.append(k)
    return keys


def tensors_digest(state: dict[str, torch.Tensor], keys: list[str]) -> str:
    """SHA-256 of the named tensors (name, dtype, shape and bytes, in sorted key order)."""
    h = hashlib.sha256()
    for k in sorted(keys):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_model(model: SparseCLIP, cfg: Config, directory: str | Path,
               extra_files: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically (frozen pretrained towers
    by reference, see the module docstring)."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(final)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "library": "sparseclip"}
    frozen = frozen_tower_keys(model)
    if frozen:
        source = model.cfg.towers or model.cfg.pretrained
        meta["towers"] = json.dumps({"source": source, "sha256": tensors_digest(state, frozen),
                                     "tensors": len(frozen)})
        state = {k: v for k, v in state.items() if k not in set(frozen)}
    try:
        save_file(state, str(tmp / WEIGHTS), metadata=meta)
        (tmp / CONFIG).write_text(cfg.to_json())
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
    except (OSError, RuntimeError) as e:  # a full disk reaches torch.save as RuntimeError("... iostream error")
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(final.parent).free / 1e6
        why = (str(e).splitlines() or [type(e).__name__])[0][:80]
        raise CheckpointError(f"cannot write the checkpoint {final} ({why}; {free:.0f} MB free on that disk): "
                              "the previous checkpoint is kept") from None
    commit_dir(tmp, final)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint dir that ``path`` (a checkpoint dir, a run dir, or ``NAME:TAG`` of a model shipped with the
    package, :mod:`sparseclip.weights`) refers to. The one place where every command's run argument is resolved."""
    p = Path(path)
    if not p.exists():
        if shipped.is_spec(path):
            return shipped.resolve(str(path))
        raise CheckpointError(f"no such checkpoint or run: {path} (a shipped model is NAME:TAG: "
                              f"{', '.join(shipped.list_pretrained(as_str=True)) or 'none installed'})")
    if p.is_file():
        if p.name == WEIGHTS:
            return p.parent
        raise CheckpointError(f"{path}: expected a checkpoint directory (with {WEIGHTS} and {CONFIG})")
    if (p / WEIGHTS).is_file():
        spec = shipped.shipped_spec(p)  # a shipped model's folder given by its path: checked as by its name
        return shipped.resolve(spec) if spec is not None else p
    found = RunDir(p).model_dir()
    if found is not None:
        return found
    raise CheckpointError(f"{path}: no {WEIGHTS} here, and no final/ or checkpoints/ inside")



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
    load_weights(model, ckpt)
    return model.to(device).eval(), cfg


def load_weights(model: SparseCLIP, ckpt: str | Path) -> None:
    """Load a checkpoint dir's weights into a model built from its config; towers saved by reference are
    checked against the recorded hash (one line when they differ)."""
    path = Path(ckpt) / WEIGHTS
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    state = shipped.dequantize(state, meta)  # int8 heads (shipped models) back to float32
    by_ref: list[str] = []
    if "towers" in meta:
        try:
            ref = json.loads(meta["towers"])
            ref = ref if isinstance(ref, dict) else {}
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: unreadable towers reference in its metadata") from None
        by_ref = frozen_tower_keys(model)
        now = tensors_digest(model.state_dict(), by_ref) if by_ref else ""
        if now != ref.get("sha256"):
            raise CheckpointError(f"{ckpt}: its frozen towers ({ref.get('source')}) have changed since training "
                                  f"(sha256 {str(ref.get('sha256'))[:12]}, now {now[:12] or 'none'}); "
                                  f"use the tower weights it was trained on")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = sorted(set(missing) - set(by_ref))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise CheckpointError(f"{ckpt}: weights do not match its config.json ({detail})")
