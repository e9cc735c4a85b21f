"""Sizes the machine cannot hold, refused in one line before anything is built.

Two estimates, both lower bounds (activations, the towers and the data loader's copies are not counted), so
they never refuse a run that would fit:

- **the heads**: each wide head has ``in_dim x model.head.expansion x model.embed_dim`` weights (``in_dim``: the
  tower's width with ``placement=replace`` when the config gives it, else ``model.embed_dim``); training holds
  16 bytes per weight (fp32 weight, gradient and AdamW's two moments). The model is built in RAM first (4 bytes
  per weight), then moved to the device, which holds the 16.
- **one input batch**: the loader builds each rank's batch (``train.batch_size / world size``) whole before
  gradient accumulation splits it: ``3 x data.image_size^2 x 4`` bytes per image plus ``data.context_length x 8``
  per caption's tokens.

Allocation failures that still happen (torch's "can't allocate memory", CUDA out of memory) become the same kind
of one-line error through :func:`explain_oom`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..config import Config

#: bytes per trained fp32 weight: the weight, its gradient, AdamW's exp_avg and exp_avg_sq
TRAIN_BYTES_PER_WEIGHT = 16
_OOM_WORDS = ("can't allocate memory", "cannot allocate memory", "out of memory")


class TooLarge(ValueError):
    """A setting asks for more memory than the machine has (one line naming the setting)."""


def machine_ram() -> int:
    """Physical memory in bytes (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def head_weights(cfg: Config) -> int:
    """The weights of both heads (an estimate before building them; 0 for CLIP's narrow head)."""
    from ..model.heads import HEADS

    m, h = cfg.model, cfg.model.head
    if not HEADS.get(h.kind).wide:
        return 0
    width = h.expansion * m.embed_dim
    total = 0
    for tower in (m.vision_cfg, m.text_cfg):
        known = tower.get("width") if isinstance(tower, dict) and not m.openclip_name and not m.towers else None
        in_dim = int(known) if h.placement == "replace" and isinstance(known, int) else m.embed_dim
        total += in_dim * width + (width if h.bias else 0)
    return total


def batch_bytes(cfg: Config, world_size: int = 1) -> int:
    """Bytes of one rank's input batch: fp32 images and int64 tokens."""
    local = max(1, cfg.train.batch_size // max(1, world_size))
    return local * (3 * cfg.data.image_size ** 2 * 4 + cfg.data.context_length * 8)


def check_memory(cfg: Config, device: torch.device, world_size: int = 1, ram: int | None = None) -> None:
    """Refuse (:class:`TooLarge`) heads or an input batch larger than the machine's RAM (or, on a GPU, heads
    whose training state exceeds its memory); see the module docstring for the estimates."""
    ram = machine_ram() if ram is None else ram
    weights = head_weights(cfg)
    train_bytes = weights * TRAIN_BYTES_PER_WEIGHT
    on_gpu = device.type == "cuda"
    gpu = torch.cuda.get_device_properties(device).total_memory if on_gpu else 0
    limits = [(weights * 4, ram, "RAM", "to build them")]
    limits.append((train_bytes, gpu, "GPU memory", "to train them") if on_gpu
                  else (train_bytes, ram, "RAM", "to train them"))
    for need, have, where, why in limits:
        if have and need > have:
            raise TooLarge(f"model.head.expansion={cfg.model.head.expansion}: the two heads have {weights:,} weights, "
                           f"{_gb(need)} {why} (estimate: in_dim x expansion x embed_dim per head, "
                           f"{TRAIN_BYTES_PER_WEIGHT} bytes per weight to train) but this machine has "
                           f"{_gb(have)} of {where}; lower model.head.expansion")
    need = batch_bytes(cfg, world_size)
    if ram and need > ram:
        raise TooLarge(f"train.batch_size={cfg.train.batch_size}, data.image_size={cfg.data.image_size}: one input "
                       f"batch needs {_gb(need)} (estimate: batch_size / {world_size} rank(s) x (3 x image_size^2 "
                       f"x 4 bytes + context_length x 8 bytes)) but this machine has {_gb(ram)} of RAM; lower "
                       "train.batch_size (train.accum_steps does not shrink the loaded batch) or data.image_size")


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure (Python's, torch's CPU allocator's or CUDA's)."""
    if isinstance(e, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e).lower() for w in _OOM_WORDS)


@contextmanager
def explain_oom(what: str, settings: str) -> Iterator[None]:
    """Turn an allocation failure inside the block into one line: what was being built and which settings to
    lower."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not is_oom(e):
            raise
        first = (str(e).splitlines() or [type(e).__name__])[0]
        detail = first.split("] ", 1)[-1][:160]  # torch's "[enforce fail at alloc_cpu.cpp:127] err == 0. ..."
        raise TooLarge(f"out of memory while {what} ({detail}); lower {settings}") from None
