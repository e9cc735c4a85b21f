"""Frozen-tower feature caching and head-only training ("sparsify pretrained towers" fast).

When both towers are frozen (``model.freeze_image`` and ``model.freeze_text``) only the heads and the logit
scale learn, and the towers' outputs for a sample never change. So compute them once
(:func:`cache_pairs`, saved as safetensors and reused while the towers, the data and the transform are the
same) and train the heads on the cached features (:func:`train_heads`): a step costs two matrix products
instead of two tower forward passes.

The trainer does it by itself when :func:`uses_feature_cache` (both towers frozen, CSV data,
``train.feature_cache``): :func:`cache_csv_pairs` once, then every step runs :class:`HeadOnly` on a batch of
:class:`CachedPairsSource` (the same rows in the same order as the CSV source, split by rank), with the
trainer's optimiser, checkpoints, resume and logging unchanged. For a loop of your own::

    cache = cache_pairs(model, tokenizer, transform, image_paths, captions, path=run_dir / "features.safetensors")
    history = train_heads(model, cache, cfg.train)   # AdamW + warmup/cosine + ClipLoss on the heads only
    # model is now trained; save it as usual: the frozen towers are unchanged
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import Config, TrainConfig
from .data.sources import DataError, EpochPermutation, SkipSample, decode_image
from .distributed import rank_indices
from .loss import ClipLoss
from .model import SparseCLIP


@dataclass
class FeatureCache:
    """Tower outputs (before the heads) of N image-caption pairs, plus the rows they came from."""

    image: torch.Tensor  # (N, image_dim)
    text: torch.Tensor  # (N, text_dim)
    meta: dict = field(default_factory=dict)  # key, rows kept, skipped counts, captions

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # per process: ranks without a shared run dir may race
        save_file({"image": self.image.contiguous(), "text": self.text.contiguous()}, str(tmp),
                  metadata={"meta": json.dumps(self.meta)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            return cls(f.get_tensor("image"), f.get_tensor("text"), meta)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def image_tower_features(model: SparseCLIP, images: Sequence[torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Image-tower outputs (before the head) of transformed image tensors, in eval mode."""
    dev = _device(model)
    was = model.training
    model.eval()
    out = [model.towers.encode_image(torch.stack(list(images[i:i + batch_size])).to(dev)).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def text_tower_features(model: SparseCLIP, tokenizer: Callable, texts: Sequence[str],
                        batch_size: int = 256) -> torch.Tensor:
    """Text-tower outputs (before the head) of texts, in eval mode."""
    dev = _device(model)
    was = model.training
    model.eval()
    out = [model.towers.encode_text(tokenizer(list(texts[i:i + batch_size])).to(dev)).float().cpu()
           for i in range(0, len(texts), batch_size)]
    model.train(was)
    return torch.cat(out)


def cache_key(model: SparseCLIP, images: Sequence[Any], captions: Sequence[str], extra: str = "") -> str:
    """Identity of a cache: tower config and weights file, the pairs, and ``extra`` (e.g. the transform)."""
    cfg = model.cfg
    towers = {"embed_dim": cfg.embed_dim, "vision": cfg.vision_cfg, "text": cfg.text_cfg,
              "openclip": cfg.openclip_name, "placement": cfg.head.placement}
    h = hashlib.sha256(json.dumps(towers, sort_keys=True, default=str).encode())
    if getattr(cfg, "pretrained", ""):
        p = Path(cfg.pretrained)
        h.update(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode() if p.exists() else b"")
    for img, cap in zip(images, captions, strict=True):
        h.update((img if isinstance(img, str) else f"<{type(img).__name__}>").encode() + b"\0")
        h.update(cap.encode() + b"\0")
    h.update(extra.encode())
    return h.hexdigest()[:32]


def cache_pairs(model: SparseCLIP, tokenizer: Callable, transform: Callable,
                images: Sequence[str | Image.Image], captions: Sequence[str], path: str | Path | None = None,
                batch_size: int = 64, extra_key: str = "", progress: Callable[[int, int], None] | None = None
                ) -> FeatureCache:
    """Tower features of image-caption pairs (images as paths or PIL images), computed once.

    With ``path``, a cache there with the same key (:func:`cache_key`) is loaded instead of recomputed, and a
    new one is saved there. Unreadable images and empty captions are skipped and counted in ``meta``.
    """
    if not (model.cfg.freeze_image and model.cfg.freeze_text):
        raise ValueError("cache_pairs: both towers must be frozen (model.freeze_image, model.freeze_text); "
                         "cached features of a trained tower go stale")
    key = cache_key(model, images, captions, extra_key + repr(transform))
    if path is not None and Path(path).is_file():
        cached = FeatureCache.load(path)
        if cached.meta.get("key") == key:
            return cached
    rows, tensors, skipped = [], [], {}
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        try:
            if not cap or not cap.strip():
                raise SkipSample("empty_caption")
            if isinstance(img, Image.Image):
                tensors.append(transform(img.convert("RGB")))
            else:
                tensors.append(decode_image(img, transform))
        except SkipSample as e:
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
            continue
        rows.append(i)
    if not rows:
        raise ValueError("cache_pairs: no usable pairs")
    feats = []
    for s in range(0, len(tensors), batch_size):
        feats.append(image_tower_features(model, tensors[s:s + batch_size], batch_size))
        if progress:
            progress(min(s + batch_size, len(tensors)), len(tensors))
    kept = [captions[i] for i in rows]
    cache = FeatureCache(torch.cat(feats), text_tower_features(model, tokenizer, kept),
                         {"key": key, "rows": rows, "skipped": skipped, "captions": kept})
    if path is not None:
        cache.save(path)
    return cache


def uses_feature_cache(cfg: Config) -> bool:
    """Whether the trainer trains on cached tower features: both towers frozen, a finite data set (CSV) and
    ``train.feature_cache`` on."""
    return cfg.model.freeze_image and cfg.model.freeze_text and cfg.data.kind == "csv" and cfg.train.feature_cache


def cache_csv_pairs(cfg: Config, model: SparseCLIP, tokenizer: Callable, transform: Callable, path: str | Path,
                    progress: bool = False) -> FeatureCache:
    """:func:`cache_pairs` of ``cfg.data.train_data`` (a CSV), reused from ``path`` when it matches; stops with
    one line (``DataError``) when more than ``data.max_bad_fraction`` of the rows were unusable."""
    from tqdm.auto import tqdm

    from .data.csv_data import read_pairs

    d = cfg.data
    images, captions = read_pairs(d.train_data, d.csv_img_key, d.csv_caption_key, d.csv_separator)
    bar = tqdm(total=len(images), desc="cache tower features", unit="img", disable=not progress, leave=False)

    def tick(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        cache = cache_pairs(model, tokenizer, transform, images, captions, path=path, progress=tick)
    except ValueError as e:  # no usable pairs at all
        raise DataError(f"data.train_data: {e}") from None
    finally:
        bar.close()
    bad = sum(cache.meta.get("skipped", {}).values())
    if len(images) >= d.bad_min_samples and bad > d.max_bad_fraction * len(images):
        raise DataError(f"data.train_data: {bad} of {len(images)} rows unusable ({cache.meta['skipped']}), "
                        f"more than data.max_bad_fraction={d.max_bad_fraction}")
    return cache


def head_codes(model: SparseCLIP, image_feats: torch.Tensor | None = None,
               text_feats: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Codes (un-normalised) of cached tower features: the heads only."""
    img = model.image_head(image_feats) if image_feats is not None else None
    txt = model.text_head(text_feats) if text_feats is not None else None
    return img, txt


def cached_batches(n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                   world_size: int = 1) -> Iterator[torch.Tensor]:
    """Row indices of rank ``rank``'s share (``batch_size`` rows) of each step, in the order a CSV source
    reads its rows (:class:`~sparseclip.data.sources.EpochPermutation`); a pure function of the step, so
    training on a cache resumes exactly."""
    if batch_size * world_size > n:
        raise ValueError(f"batch size {batch_size * world_size} exceeds the {n} cached pairs")
    row_at = EpochPermutation(n, seed)
    for step in itertools.count(start_step):
        yield row_at.rows(rank_indices(step, rank, world_size, batch_size))


class HeadOnly(nn.Module):
    """A :class:`SparseCLIP` whose forward takes cached tower features instead of images and tokens and
    returns the same dict (codes, normalised features, logit scale): the trainer's step, heads only."""

    def __init__(self, model: SparseCLIP):
        super().__init__()
        self.model = model

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> dict:
        img, txt = head_codes(self.model, image_feats, text_feats)
        return {"logit_scale": self.model.logit_scale.exp(), "image_code": img, "text_code": txt,
                "image_features": F.normalize(img, dim=-1), "text_features": F.normalize(txt, dim=-1)}


class CachedPairsSource:
    """A training source of cached tower features (the trainer's ``TrainSource``): each step yields
    ``(image_feats, text_feats)`` of the rows :func:`cached_batches` picks for this rank."""

    def __init__(self, cache: FeatureCache, seed: int, rank: int = 0, world_size: int = 1):
        self.cache, self.seed, self.rank, self.world_size = cache, seed, rank, world_size

    def batches(self, start_step: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in cached_batches(len(self.cache), batch_size, self.seed, start_step, self.rank, self.world_size):
            yield self.cache.image[idx], self.cache.text[idx]

    def stats(self) -> dict:
        skipped = self.cache.meta.get("skipped", {})
        return {"feature_cache": True, "cached_pairs": len(self.cache), "skipped": skipped,
                "skipped_total": sum(skipped.values())}


def train_heads(model: SparseCLIP, cache: FeatureCache, train: TrainConfig,
                log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the heads and the logit scale on cached features (AdamW, warmup + cosine, CLIP loss, logit-scale
    cap); returns the logged history (every ``train.log_every`` steps and the last)."""
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("towers.")]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps)
    warm, total = train.warmup, train.steps

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    loss_fn = ClipLoss()
    dev = _device(model)
    image, text = cache.image.to(dev), cache.text.to(dev)
    history = []
    model.train()
    for step, idx in zip(range(total), cached_batches(len(cache), train.batch_size, train.seed), strict=False):
        img, txt = head_codes(model, image[idx], text[idx])
        loss = loss_fn(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
        opt.step()
        sched.step()
        model.clamp_logit_scale()
        if (step + 1) % train.log_every == 0 or step + 1 == total:
            rec = {"step": step + 1, "loss": float(loss.detach()),
                   "logit_scale": float(model.logit_scale.detach().exp()),
                   "l0_image": float((img.detach() > 0).sum(1).float().mean())}
            history.append(rec)
            if log:
                log(rec)
    model.eval()
    return history
