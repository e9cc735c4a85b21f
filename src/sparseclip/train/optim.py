"""AdamW with OpenCLIP's parameter groups, and the run's schedules: the learning rate (warmup + cosine or
constant) and the cap on the logit scale (fixed, or annealed from ``train.logit_scale_max_start``), in
:class:`Schedules`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config, TrainConfig


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


def logit_scale_max_at(cfg: Config, done: int) -> float:
    """The cap on the logit scale after ``done`` steps: ``model.logit_scale_max``, or with a schedule
    (``train.logit_scale_max_start``) the geometric path from the start to it over the first
    ``train.logit_scale_max_anneal`` of the steps."""
    end, begin = cfg.model.logit_scale_max, cfg.train.logit_scale_max_start
    if begin <= 0:
        return end
    frac = min(1.0, done / max(1.0, cfg.train.logit_scale_max_anneal * cfg.train.steps))
    return math.exp(math.log(begin) + frac * (math.log(end) - math.log(begin)))


class Schedules:
    """Everything that moves with the step: the learning rate (``train.schedule``, :func:`make_scheduler`) and
    the cap on the logit scale (:func:`logit_scale_max_at`), its start included.

    Where the cap starts: at ``train.logit_scale_max_start`` with a schedule, else at ``model.logit_scale_max``.
    Where the scale starts: with ``model.init_at_cap`` at the cap's start (the model is built at
    ``model.logit_scale_max``; :meth:`start` moves it to a schedule's start), else at ``model.init_logit_scale``.
    After each step (:meth:`step`) the learning rate moves on and the scale is clamped to the step's cap.
    Its state (:meth:`state_dict`) is the learning-rate scheduler's: the cap is a function of the step.
    """

    def __init__(self, cfg: Config, optimizer: torch.optim.Optimizer) -> None:
        self.cfg = cfg
        self.lr = make_scheduler(optimizer, cfg.train)

    @property
    def cap_start(self) -> float:
        """The cap before the first step."""
        begin = self.cfg.train.logit_scale_max_start
        return begin if begin > 0 else self.cfg.model.logit_scale_max

    def cap(self, done: int) -> float:
        """The cap on the logit scale after ``done`` steps."""
        return logit_scale_max_at(self.cfg, done)

    def start(self, model: nn.Module) -> None:
        """Set the model's logit scale where the run starts it (before a resume loads its own)."""
        if self.cfg.train.logit_scale_max_start > 0 and self.cfg.model.init_at_cap:
            with torch.no_grad():
                model.logit_scale.fill_(math.log(self.cap_start))

    def step(self, model: nn.Module, done: int) -> None:
        """After step ``done``: the next learning rate, and the scale clamped to this step's cap."""
        self.lr.step()
        model.clamp_logit_scale(self.cap(done))

    def last_lr(self) -> float:
        """The learning rate of the first parameter group for the next step."""
        return self.lr.get_last_lr()[0]
