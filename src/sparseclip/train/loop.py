"""The training loop: one readable path from a config to a trained, checkpointed Sparse CLIP."""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config, ConfigError
from ..data.sources import build_train_source
from ..eval.sparsity import FiringWindow, batch_stats
from ..files.atomic import write_text_atomic
from ..loss import dead_unit_push, l1_penalty
from ..model import create_model, get_tokenizer, image_transform
from ..model.checkpoint import load_weights, save_model
from ..model.feature_cache import cache_train_pairs
from ..model.rundir import CONFIG, RunDir
from .accumulate import accumulate_gradients, split_batch
from .dictionary import DictionaryKeeper, check_levers
from .distributed import all_reduce_mean, barrier, cleanup, init_distributed, make_clip_loss, unwrap, wrap_ddp
from .feature_cache import CachedPairsSource, HeadOnly, uses_feature_cache
from .logger import RunLogger, read_log
from .memory import check_memory, explain_oom
from .optim import make_optimizer, make_scheduler
from .plots import plot_training_curves
from .state import find_resume, load_training_state, prune_checkpoints, save_training_checkpoint

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


class Diverged(ValueError):
    """A non-finite loss, gradient or weight under ``train.nonfinite=stop`` (one line)."""


def prepare_run_dir(run_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to train into a folder holding another run unless resuming or told to overwrite it."""
    present = RunDir(run_dir).run_files()
    if not present or resume:
        return
    if not overwrite:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(present)}): continue it with --resume latest, "
                         "replace it with --overwrite, or choose another --out")
    RunDir(run_dir).clear()


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


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes the step it is in, saves a checkpoint and stops. A second
    signal stops at once (the run then continues from its previous checkpoint)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        import signal

        if self.requested:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n[train] {signal.Signals(signum).name}: stopping after this step with a checkpoint "
              "(again to stop at once)", flush=True)

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class Interrupted(KeyboardInterrupt):
    """The run stopped at a step boundary on a signal, with a checkpoint saved (``step``: its step)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


def _step_flags(loss: dict, grad_norm: torch.Tensor | None, stop_requested: bool) -> tuple[str, bool]:
    """``(what is non-finite this step on any rank: "loss", "gradient" or "", whether any rank was asked to
    stop)``, agreed across ranks in one collective."""
    total = sum(float(v) for v in loss.values())
    flags = _any_rank([not math.isfinite(total), grad_norm is not None and not bool(torch.isfinite(grad_norm)),
                       stop_requested])
    return ("loss" if flags[0] else "gradient" if flags[1] else ""), flags[2]


def _any_rank(flags: list[bool]) -> list[bool]:
    """Each flag, set when any rank set it (one collective under torchrun; as given otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor([float(f) for f in flags], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)  # a sum: > 0 when any rank set the flag
        return [bool(v > 0) for v in t.tolist()]
    return [bool(f) for f in flags]


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@torch.no_grad()
def _codes_finite(model, step_model, batch: tuple, amp) -> bool:
    """Whether the model (in eval mode, as ``sparseclip eval`` runs it) gives finite codes for ``batch`` on
    every rank."""
    model.eval()
    with amp():
        out = step_model(*batch)
    ok = all(bool(torch.isfinite(out[k]).all()) for k in ("image_code", "text_code") if k in out)
    return not _any_rank([not ok])[0]


def _check_end(run_dir: Path, bad: str, skipped: int, steps_run: int, finite_at: int | None,
               codes_ok: bool) -> None:
    """Refuse final weights that a skipped last step or non-finite codes make unusable (:class:`Diverged`)."""
    counted = f"{skipped} of the {steps_run} steps run were skipped (train.nonfinite=skip_step)"
    if bad:
        why = f"non-finite {bad} at the last step: {counted}"
    elif not codes_ok:
        why = "the final weights give non-finite codes" + (f" ({counted})" if skipped else "")
    else:
        return
    raise Diverged(f"{why}; final/ not written; {_newest_finite_checkpoint(run_dir, finite_at)}; "
                   "try a lower train.lr")


def _newest_finite_checkpoint(run_dir: Path, finite_at: int | None) -> str:
    """The newest checkpoint whose weights gave a finite loss (those after ``finite_at`` steps did), in words."""
    ok = [d for s, d in RunDir(run_dir).checkpoints() if finite_at is not None and s <= finite_at]
    return (f"the newest checkpoint whose weights gave a finite loss is {ok[-1]}" if ok
            else "no checkpoint with weights known to give a finite loss was written")



def logit_scale_max_at(cfg: Config, done: int) -> float:
    """The cap on the logit scale after ``done`` steps: ``model.logit_scale_max``, or with a schedule
    (``train.logit_scale_max_start``) the geometric path from the start to it over the first
    ``train.logit_scale_max_anneal`` of the steps."""
    end, begin = cfg.model.logit_scale_max, cfg.train.logit_scale_max_start
    if begin <= 0:
        return end
    frac = min(1.0, done / max(1.0, cfg.train.logit_scale_max_anneal * cfg.train.steps))
    return math.exp(math.log(begin) + frac * (math.log(end) - math.log(begin)))


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


def _train(cfg: Config, info, resume: str | None, progress: bool | None, stop: StopRequest) -> Path:
    tc = cfg.train
    run_dir = Path(tc.output_dir)
    run = RunDir(run_dir)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = info.device
    seed_everything(tc.seed)
    with explain_oom("building the model", "model.head.expansion (or the towers' sizes)"):
        model = create_model(cfg.model).to(device)
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
    tokenizer = get_tokenizer(cfg.model, cfg.data.context_length)
    transform = image_transform(cfg.data.image_size, train=False, cfg=cfg.model)
    show = (tc.progress if progress is None else progress) and info.is_main
    step_model = model
    if uses_feature_cache(cfg):  # frozen towers: their features once, then the heads only
        path = run.features
        if info.is_main:
            print(f"[train] both towers frozen: training the heads on cached tower features ({path}); "
                  f"train.feature_cache=false runs the towers every step")
            cache = cache_train_pairs(cfg, model, tokenizer, transform, path, progress=show)
        barrier()
        if not info.is_main:
            cache = cache_train_pairs(cfg, model, tokenizer, transform, path)
        source = CachedPairsSource(cache, cfg.data.train_seed, info.rank, info.world_size)
        step_model = HeadOnly(model)
        keeper = DictionaryKeeper(cfg, cache.image, cache.text)
    else:
        check_levers(cfg, cached=False)
        source = build_train_source(cfg, tokenizer, transform, rank=info.rank, world_size=info.world_size)
        keeper = None
    if keeper is not None:
        keeper.start(model)  # a resumed run loads its weights over these below
    if cfg.loss.dead_aux > 0:  # the push on dead units reads the heads' pre-activations
        if not model.image_head.nonnegative:
            raise ConfigError(f"loss.dead_aux: needs a head whose codes are >= 0 (relu, topk), got "
                              f"model.head.kind={cfg.model.head.kind}")
        model.image_head.keep_pre = model.text_head.keep_pre = True
    optimizer = make_optimizer(model, tc)
    scheduler = make_scheduler(optimizer, tc)
    scaler = torch.amp.GradScaler(device.type) if tc.precision == "fp16" else None
    loss_fn = make_loss_fn(cfg, make_clip_loss(info, memory_efficient=cfg.loss.memory_efficient,
                                               local_loss=cfg.loss.local_loss,
                                               gather_with_grad=cfg.loss.gather_with_grad,
                                               chunk_size=cfg.loss.chunk_size or None))

    if tc.logit_scale_max_start > 0 and cfg.model.init_at_cap:  # a cap schedule starts the scale at its start
        with torch.no_grad():
            model.logit_scale.fill_(math.log(tc.logit_scale_max_start))
    start = 0
    if resume:
        ckpt = find_resume(run_dir, resume)
        check_resume_config(ckpt, cfg)
        load_weights(model, ckpt)
        start = load_training_state(ckpt, optimizer, scheduler, scaler)
    ddp_model = wrap_ddp(step_model, info)
    if tc.compile:
        ddp_model = torch.compile(ddp_model)
    logger = None
    if info.is_main:
        write_text_atomic(run.config, cfg.to_json())
        logger = RunLogger(run_dir, tensorboard=tc.tensorboard, resume_step=start if resume else None)
    save_at, keep = checkpoint_steps(cfg)
    amp = ((lambda: torch.autocast(device.type, dtype=_DTYPES[tc.precision])) if tc.precision in _DTYPES
           else contextlib.nullcontext)
    bar = tqdm(total=tc.steps, initial=start, desc=f"train {cfg.name}", disable=not show, dynamic_ncols=True)
    batches = source.batches(start, tc.batch_size // info.world_size)
    model.train()
    step, skipped = start, 0
    finite_at: int | None = None  # the weights after this many steps gave a finite loss (in the step after them)
    t_last, n_last = time.time(), 0
    # features that fired on no training input since the last log record, per modality (rank 0's share)
    windows = {"image": FiringWindow(), "text": FiringWindow()}
    resampled = 0  # units re-aimed by train.resample_every since the last log record
    try:
        for step in range(start, tc.steps):
            images, tokens = next(batches)
            images, tokens = images.to(device, non_blocking=True), tokens.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            res = accumulate_gradients(ddp_model, split_batch((images, tokens), tc.accum_steps), loss_fn,
                                       scaler=scaler, autocast=amp)
            if scaler is not None:
                scaler.unscale_(optimizer)
            # the 2-norm of all gradients (clipped to grad_clip when set): its finiteness is checked below
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf)
            # fp16: the scaler skips inf grads; a signal seen during this step stops the run after it, on every rank
            bad, stopping = _step_flags(res.loss, norm if scaler is None else None, stop.requested)
            if not bad:
                finite_at = step
            if bad:
                if tc.nonfinite == "stop":
                    last = RunDir(run_dir).latest()
                    raise Diverged(f"non-finite {bad} at step {step + 1}: stopped (train.nonfinite=stop); "
                                   + (f"the newest checkpoint, {last.name}, holds the last finite weights"
                                      if last else "no checkpoint was written") +
                                   "; try a lower train.lr or train.nonfinite=skip_step")
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
            elif scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            model.clamp_logit_scale(logit_scale_max_at(cfg, step + 1))
            if keeper is not None:
                resampled += keeper.after_step(step + 1, model, optimizer)
            n_last += images.shape[0] * info.world_size
            done = step + 1
            if info.is_main:
                for side, window in windows.items():
                    window.add(res.outputs[f"{side}_code"].detach())
            if done % tc.log_every == 0 or done == tc.steps:
                # each rank holds its local loss; their mean is the full-batch loss (collective: all ranks)
                terms = {k: all_reduce_mean(v) for k, v in res.loss.items()}
            if info.is_main and (done % tc.log_every == 0 or done == tc.steps):
                now = time.time()
                out = res.outputs  # sparsity statistics are rank 0's share of the batch
                img, txt = batch_stats(out["image_code"]), batch_stats(out["text_code"])
                record = {"step": done, "loss": terms["contrastive"], "total_loss": sum(terms.values()),
                          "lr": scheduler.get_last_lr()[0], "logit_scale": float(model.logit_scale.detach().exp()),
                          **{f"image_{k}": v for k, v in img.items()},
                          **{f"text_{k}": v for k, v in txt.items()},
                          **{f"{side}_{k}": v for side, w in windows.items() for k, v in w.take().items()},
                          "samples_per_s": n_last / max(now - t_last, 1e-9), "skipped_steps": skipped,
                          **({"resampled_units": resampled} if tc.resample_every else {})}
                logger.log(record)
                t_last, n_last, resampled = now, 0, 0
                bar.set_postfix(loss=f"{terms['contrastive']:.3f}", L0=f"{img['l0_pct']:.1f}%")
            bar.update(1)
            if done == tc.steps:  # a skipped last step or non-finite codes: the run failed, no final/
                first = split_batch((images, tokens), tc.accum_steps)[0]
                _check_end(run_dir, bad, skipped, done - start, finite_at,
                           codes_ok=not bad and _codes_finite(model, step_model, first, amp))
            # a signal: every rank stops after this same step (the flag was shared above), with a checkpoint
            if done in save_at or (stopping and done < tc.steps):
                if not _finite(model):
                    raise Diverged(f"non-finite weights after step {done}: stopped before saving them; "
                                   "try a lower train.lr")
                if info.is_main:
                    save_training_checkpoint(run_dir, done, model, cfg, optimizer, scheduler, scaler)
                    prune_checkpoints(run_dir, keep_steps=keep, keep_last=tc.keep_last)
                barrier()
            if stopping and done < tc.steps:
                raise Interrupted(f"interrupted: stopped after step {done} with a checkpoint; continue exactly "
                                  f"with: sparseclip train ... --out {run_dir} --resume latest", step=done)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if not _finite(model):
        raise Diverged("non-finite weights at the end of training: final/ not written; try a lower train.lr")
    if info.is_main:
        save_model(unwrap(model), cfg, run.final)
        write_text_atomic(run.data_stats, json.dumps(source.stats(), indent=2))
        plot_training_curves(run_dir, read_log(run_dir))
        if skipped:
            print(f"sparseclip: warning: {skipped} of the {tc.steps - start} steps run were skipped (non-finite loss "
                  "or gradient, train.nonfinite=skip_step; skipped_steps in log.jsonl)", file=sys.stderr)
    return run_dir
