"""AdamW with OpenCLIP's parameter groups and a warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def exclude_from_decay(name: str, p: nn.Parameter) -> bool:
    """OpenCLIP's rule: no weight decay on gains, biases, norms and logit_scale (any tensor with ndim < 2)."""
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: no decay on gains/biases/logit_scale; the towers' parameters
    (names under ``towers.``) at ``train.lr * train.tower_lr_scale``, the heads and logit scale at ``train.lr``.
    The schedule multiplies every group's own lr; with a scale of 0 the tower weights stay as they are
    (AdamW's decay is scaled by the lr too)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        tower = cfg.tower_lr_scale != 1 and (name.startswith("towers.") or ".towers." in name)
        groups.setdefault((tower, exclude_from_decay(name, p)), []).append(p)
    groups.setdefault((False, True), [])
    groups.setdefault((False, False), [])
    # order: (heads | all) no-decay, decay, then the towers' own groups (resume needs a fixed order)
    order = sorted(groups, key=lambda g: (g[0], not g[1]))
    params = [{"params": groups[g], "weight_decay": 0.0 if g[1] else cfg.weight_decay,
               "lr": cfg.lr * (cfg.tower_lr_scale if g[0] else 1.0)} for g in order]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def cosine_with_warmup(warmup: int, steps: int):
    """Multiplier of the base lr at a step: linear warmup to 1, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def constant_with_warmup(warmup: int):
    """Multiplier of the base lr at a step: linear warmup to 1, then 1."""
    return lambda step: (step + 1) / warmup if step < warmup else 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """``train.schedule``: ``cosine`` (OpenCLIP's warmup + cosine decay to 0) or ``constant`` (warmup, then flat)."""
    factor = constant_with_warmup(cfg.warmup) if cfg.schedule == "constant" else cosine_with_warmup(cfg.warmup,
                                                                                                   cfg.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
