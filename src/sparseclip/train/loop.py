"""The training loop: one readable path from a config to a trained, checkpointed Sparse CLIP.

:func:`train` sets up the process group and the run folder; :func:`_train` builds the parts (model, data,
optimiser, :class:`~.optim.Schedules`, :class:`~.guard.Guard`, :class:`~.state.Checkpointer`,
:class:`StepLog`) and :func:`_run_steps` is the step loop itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config, ConfigError
from ..data.sources import build_train_source
from ..eval.sparsity import FiringWindow, batch_stats
from ..files.atomic import write_text_atomic
from ..loss import dead_unit_push, l1_penalty
from ..model import create_model, get_tokenizer, image_transform
from ..model.feature_cache import cache_train_pairs
from ..model.rundir import RunDir
from .accumulate import accumulate_gradients, split_batch
from .dictionary import DictionaryKeeper, check_levers
from .distributed import all_reduce_mean, barrier, cleanup, init_distributed, make_clip_loss, wrap_ddp
from .feature_cache import CachedPairsSource, HeadOnly, uses_feature_cache
from .guard import Diverged, Guard, Interrupted, StopRequest
from .guard import codes_finite as _codes_finite
from .logger import RunLogger, read_log
from .memory import check_memory, explain_oom
from .optim import Schedules, logit_scale_max_at, make_optimizer
from .plots import plot_training_curves
from .state import Checkpointer, find_resume

# re-exported: callers import these from the loop
__all__ = ["Diverged", "Interrupted", "logit_scale_max_at", "make_loss_fn", "seed_everything", "train"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run_dir(run_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to train into a folder holding another run unless resuming or told to overwrite it."""
    present = RunDir(run_dir).run_files()
    if not present or resume:
        return
    if not overwrite:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(present)}): continue it with --resume latest, "
                         "replace it with --overwrite, or choose another --out")
    RunDir(run_dir).clear()


def make_loss_fn(cfg: Config, clip_loss: torch.nn.Module):
    """``outputs -> {"contrastive": ..., ["l1": ...]}``: the terms whose sum is minimised."""

    def loss_fn(out: dict) -> dict:
        terms = {"contrastive": clip_loss(out["image_features"], out["text_features"], out["logit_scale"])}
        if cfg.loss.l1_coef > 0:
            terms["l1"] = cfg.loss.l1_coef * l1_penalty(out["image_features"], out["text_features"])
        if cfg.loss.dead_aux > 0:
            terms["dead_aux"] = cfg.loss.dead_aux * sum(dead_unit_push(out[f"{side}_pre"], cfg.loss.dead_aux_rate)
                                                        for side in ("image", "text")) / 2
        return terms

    return loss_fn


def train(cfg: Config, resume: str | None = None, progress: bool | None = None, overwrite: bool = False) -> Path:
    """Train a model as ``cfg`` says; returns the run directory (with ``final/`` holding the model).

    ``resume`` is ``"latest"`` or a checkpoint path; the run then continues exactly where it stopped. A folder
    that already holds a run is refused unless resuming or ``overwrite`` (which replaces it). The folder is
    locked while training (a second writer is refused). SIGINT / SIGTERM stop at the next step boundary with a
    checkpoint (:class:`Interrupted`); a non-finite loss, gradient or weight stops the run (:class:`Diverged`)
    or skips the step (``train.nonfinite``).
    Under ``torchrun`` every rank runs this function: data is split by rank, features are gathered for the
    contrastive loss as in OpenCLIP, and rank 0 logs and writes checkpoints. ``train.batch_size`` is the
    global batch.
    """
    tc = cfg.train
    cfg.model.check_frozen_towers()
    if tc.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available (use train.device=cpu)")
    info = init_distributed(None if tc.device == "auto" else tc.device)
    from ..files.lock import FolderLock

    lock = FolderLock(tc.output_dir, "training") if info.is_main else contextlib.nullcontext()
    try:
        if tc.batch_size % (info.world_size * tc.accum_steps):
            raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by world size x train.accum_steps "
                             f"({info.world_size} x {tc.accum_steps})")
        check_memory(cfg, info.device, info.world_size)  # heads or a batch larger than the machine: one line
        if resume:  # a checkpoint that is not there is refused before the folder (and its lock) is made
            find_resume(Path(tc.output_dir), resume)
        if info.is_main:
            try:
                Path(tc.output_dir).mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ValueError(f"--out {tc.output_dir}: a file is in the way (give a folder path)") from None
        with lock, StopRequest() as stop, explain_oom("training", "train.batch_size (or raise train.accum_steps), "
                                                      "data.image_size or model.head.expansion"):
            if info.is_main:
                prepare_run_dir(Path(tc.output_dir), resume, overwrite)
            return _train(cfg, info, resume, progress, stop)
    finally:
        cleanup()


def _build_model(cfg: Config, info) -> torch.nn.Module:
    """The model on its device, with gradient checkpointing and the towers' trainable blocks as configured."""
    tc = cfg.train
    with explain_oom("building the model", "model.head.expansion (or the towers' sizes)"):
        model = create_model(cfg.model).to(info.device)
    if tc.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.model.pretrained and info.is_main:
        from ..model.towers import weights_summary

        print(f"[train] tower weights: {weights_summary(cfg.model)}")
    if tc.tower_last_blocks:
        from ..model.partial import train_last_blocks

        blocks = train_last_blocks(model.towers, tc.tower_last_blocks)
        if info.is_main:
            print("[train] fine-tuning the towers' last blocks only: " + "; ".join(
                f"{side}: last {tc.tower_last_blocks} of {b['n_blocks']} ({b['blocks']}), "
                f"{b['trainable_params']:,} parameters" for side, b in blocks.items()))
    return model


def _keep_pre_activations(cfg: Config, model) -> None:
    """``loss.dead_aux``: the push on dead units reads the heads' pre-activations (codes >= 0 only)."""
    if cfg.loss.dead_aux > 0:
        if not model.image_head.nonnegative:
            raise ConfigError(f"loss.dead_aux: needs a head whose codes are >= 0 (relu, topk), got "
                              f"model.head.kind={cfg.model.head.kind}")
        model.image_head.keep_pre = model.text_head.keep_pre = True


def _build_data(cfg: Config, info, model, show: bool) -> tuple[Any, torch.nn.Module, DictionaryKeeper | None]:
    """``(source, step_model, keeper)``: the training batches, the module a step runs (the heads only on cached
    tower features when both towers are frozen) and the dictionary levers (cached features only)."""
    tokenizer = get_tokenizer(cfg.model, cfg.data.context_length)
    transform = image_transform(cfg.data.image_size, train=False, cfg=cfg.model)
    if not uses_feature_cache(cfg):
        check_levers(cfg, cached=False)
        return build_train_source(cfg, tokenizer, transform, rank=info.rank, world_size=info.world_size), model, None
    path = RunDir(cfg.train.output_dir).features  # frozen towers: their features once, then the heads only
    if info.is_main:
        print(f"[train] both towers frozen: training the heads on cached tower features ({path}); "
              f"train.feature_cache=false runs the towers every step")
        cache = cache_train_pairs(cfg, model, tokenizer, transform, path, progress=show)
    barrier()
    if not info.is_main:
        cache = cache_train_pairs(cfg, model, tokenizer, transform, path)
    source = CachedPairsSource(cache, cfg.data.train_seed, info.rank, info.world_size)
    keeper = DictionaryKeeper(cfg, cache.image, cache.text)
    keeper.start(model)  # a resumed run loads its weights over these
    return source, HeadOnly(model), keeper


class StepLog:
    """What ``log.jsonl`` gets at a log step (rank 0 writes; the loss is averaged over ranks): the loss terms,
    learning rate, logit scale and its cap, the batch's sparsity, features that fired on no input since the last
    record (:class:`~sparseclip.eval.sparsity.FiringWindow`, rank 0's share), throughput, skipped steps and
    resampled units."""

    def __init__(self, logger: RunLogger | None, bar, resampling: bool) -> None:
        self.logger, self.bar, self.resampling = logger, bar, resampling
        self.windows = {"image": FiringWindow(), "text": FiringWindow()}
        self.resampled = 0  # units re-aimed by train.resample_every since the last record
        self.t_last, self.n_last = time.time(), 0

    def add(self, outputs: dict, samples: int) -> None:
        """Count one step's samples and (rank 0) its codes' firing."""
        self.n_last += samples
        if self.logger is not None:
            for side, window in self.windows.items():
                window.add(outputs[f"{side}_code"].detach())

    def record(self, done: int, loss: dict, outputs: dict, lr: float, scale: float, cap: float,
               skipped: int) -> None:
        """Write the record of step ``done`` (a collective: every rank calls it)."""
        terms = {k: all_reduce_mean(v) for k, v in loss.items()}  # each rank's local loss -> the full batch's
        if self.logger is None:
            return
        now = time.time()
        img, txt = batch_stats(outputs["image_code"]), batch_stats(outputs["text_code"])
        self.logger.log({"step": done, "loss": terms["contrastive"], "total_loss": sum(terms.values()), "lr": lr,
                         "logit_scale": scale, "logit_scale_max": cap,
                         **{f"image_{k}": v for k, v in img.items()},
                         **{f"text_{k}": v for k, v in txt.items()},
                         **{f"{side}_{k}": v for side, w in self.windows.items() for k, v in w.take().items()},
                         "samples_per_s": self.n_last / max(now - self.t_last, 1e-9), "skipped_steps": skipped,
                         **({"resampled_units": self.resampled} if self.resampling else {})})
        self.t_last, self.n_last, self.resampled = now, 0, 0
        self.bar.set_postfix(loss=f"{terms['contrastive']:.3f}", L0=f"{img['l0_pct']:.1f}%")


@dataclass
class _Parts:
    """What the step loop works with (built by :func:`_train`)."""

    cfg: Config
    info: Any
    model: torch.nn.Module  # the model (its parameters, its logit scale)
    step_model: torch.nn.Module  # what a step runs (the heads only on cached features)
    ddp_model: torch.nn.Module  # step_model under DDP / torch.compile
    source: Any
    keeper: DictionaryKeeper | None
    optimizer: torch.optim.Optimizer
    schedules: Schedules
    scaler: Any
    loss_fn: Any
    amp: Any
    guard: Guard
    ckpt: Checkpointer
    log: StepLog


def _train(cfg: Config, info, resume: str | None, progress: bool | None, stop: StopRequest) -> Path:
    """Build the parts, run the steps, write ``final/`` (every rank runs it; rank 0 writes)."""
    tc, run = cfg.train, RunDir(cfg.train.output_dir)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    model = _build_model(cfg, info)
    show = (tc.progress if progress is None else progress) and info.is_main
    source, step_model, keeper = _build_data(cfg, info, model, show)
    _keep_pre_activations(cfg, model)
    optimizer = make_optimizer(model, tc)
    schedules = Schedules(cfg, optimizer)
    scaler = torch.amp.GradScaler(info.device.type) if tc.precision == "fp16" else None
    loss_fn = make_loss_fn(cfg, make_clip_loss(info, memory_efficient=cfg.loss.memory_efficient,
                                               local_loss=cfg.loss.local_loss,
                                               gather_with_grad=cfg.loss.gather_with_grad,
                                               chunk_size=cfg.loss.chunk_size or None))
    schedules.start(model)
    ckpt = Checkpointer(cfg, info.is_main, model, optimizer, schedules.lr, scaler)
    start = ckpt.resume(resume)
    ddp_model = wrap_ddp(step_model, info)
    if tc.compile:
        ddp_model = torch.compile(ddp_model)
    logger = None
    if info.is_main:
        write_text_atomic(run.config, cfg.to_json())
        logger = RunLogger(run.path, tensorboard=tc.tensorboard, resume_step=start if resume else None)
    amp = ((lambda: torch.autocast(info.device.type, dtype=_DTYPES[tc.precision])) if tc.precision in _DTYPES
           else contextlib.nullcontext)
    bar = tqdm(total=tc.steps, initial=start, desc=f"train {cfg.name}", disable=not show, dynamic_ncols=True)
    guard = Guard(tc.nonfinite, run.path, stop, start)
    parts = _Parts(cfg, info, model, step_model, ddp_model, source, keeper, optimizer, schedules, scaler, loss_fn,
                   amp, guard, ckpt, StepLog(logger, bar, resampling=bool(tc.resample_every)))
    try:
        _run_steps(parts, start)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    ckpt.final()
    if info.is_main:
        write_text_atomic(run.data_stats, json.dumps(source.stats(), indent=2))
        plot_training_curves(run.path, read_log(run.path))
        if guard.skipped:
            print(f"sparseclip: warning: {guard.skipped} of the {tc.steps - start} steps run were skipped (non-finite "
                  "loss or gradient, train.nonfinite=skip_step; skipped_steps in log.jsonl)", file=sys.stderr)
    return run.path


def _run_steps(p: _Parts, start: int) -> None:
    """The step loop, from step ``start`` to ``train.steps``: gradients over micro-batches, the guard's verdict,
    the update, the schedules, the log record, the checkpoints."""
    tc, model, guard = p.cfg.train, p.model, p.guard
    batches = p.source.batches(start, tc.batch_size // p.info.world_size)
    model.train()
    for step in range(start, tc.steps):
        images, tokens = next(batches)
        images, tokens = images.to(p.info.device, non_blocking=True), tokens.to(p.info.device, non_blocking=True)
        p.optimizer.zero_grad(set_to_none=True)
        res = accumulate_gradients(p.ddp_model, split_batch((images, tokens), tc.accum_steps), p.loss_fn,
                                   scaler=p.scaler, autocast=p.amp)
        if p.scaler is not None:
            p.scaler.unscale_(p.optimizer)
        # the 2-norm of all gradients (clipped to grad_clip when set): the guard checks it is finite
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf)
        # fp16: the scaler skips inf grads; a signal seen during this step stops the run after it, on every rank
        if not guard.check(step, res.loss, norm if p.scaler is None else None):
            p.optimizer.zero_grad(set_to_none=True)  # skip_step: this step's update is dropped
        elif p.scaler is not None:
            p.scaler.step(p.optimizer)
            p.scaler.update()
        else:
            p.optimizer.step()
        done = step + 1
        p.schedules.step(model, done)
        if p.keeper is not None:
            p.log.resampled += p.keeper.after_step(done, model, p.optimizer)
        p.log.add(res.outputs, images.shape[0] * p.info.world_size)
        if done % tc.log_every == 0 or done == tc.steps:
            p.log.record(done, res.loss, res.outputs, p.schedules.last_lr(),
                         float(model.logit_scale.detach().exp()), p.schedules.cap(done), guard.skipped)
        p.log.bar.update(1)
        if done == tc.steps:  # a skipped last step or non-finite codes: the run failed, no final/
            first = split_batch((images, tokens), tc.accum_steps)[0]
            guard.check_end(done, partial(_codes_finite, model, p.step_model, first, p.amp))
        p.ckpt.after_step(done, guard.stopping)  # a signal: every rank stops after this same step, with a checkpoint
        guard.interrupt(done, tc.steps)
