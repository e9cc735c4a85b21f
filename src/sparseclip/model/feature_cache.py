"""Cached frozen-tower features: the towers' outputs (before the heads) of a set of image-caption pairs,
computed once and kept in a safetensors file, and the heads applied to them.

When both towers are frozen the towers' output for a sample never changes, so the trainer trains the heads on
cached features (:mod:`sparseclip.train.feature_cache`) and evaluation counts the dictionary's health on the
training inputs (:mod:`sparseclip.eval.health`) from the same file, a run's ``features.safetensors``::

    cache = cache_pairs(model, tokenizer, transform, image_paths, captions, path="feats.safetensors")
    image_codes, text_codes = head_codes(model, cache.image, cache.text)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..config import Config
from ..data.base import DataError, SkipSample, decode_image
from . import SparseCLIP


@dataclass
class FeatureCache:
    """Tower outputs (before the heads) of N image-caption pairs, plus the rows they came from."""

    image: torch.Tensor  # (N, image_dim)
    text: torch.Tensor  # (N, text_dim)
    meta: dict = field(default_factory=dict)  # key, rows kept, skipped counts, captions

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def save(self, path: str | Path) -> None:
        from ..files.atomic import save_safetensors

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # atomic, through a per-process temporary file: ranks without a shared run dir may race
        save_safetensors({"image": self.image.contiguous(), "text": self.text.contiguous()}, path,
                         metadata={"meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            return cls(f.get_tensor("image"), f.get_tensor("text"), meta)


_RECENT: dict[str, FeatureCache] = {}  # caches computed in this process, by key (the last two)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def image_tower_features(model: SparseCLIP, images: Sequence[torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Image-tower outputs (before the head) of transformed image tensors, in eval mode."""
    dev = _device(model)
    was = model.training
    model.eval()
    out = [model.tower_image(torch.stack(list(images[i:i + batch_size])).to(dev)).float().cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def text_tower_features(model: SparseCLIP, tokenizer: Callable, texts: Sequence[str],
                        batch_size: int = 64) -> torch.Tensor:
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
    from ..model.pretrained import weights_source_id

    cfg = model.cfg
    towers = {"embed_dim": cfg.embed_dim, "vision": cfg.vision_cfg, "text": cfg.text_cfg,
              "openclip": cfg.openclip_name, "placement": cfg.head.placement, "weights": weights_source_id(cfg)}
    h = hashlib.sha256(json.dumps(towers, sort_keys=True, default=str).encode())
    token = getattr(images, "key_token", None)  # a lazy sequence names its items' type without making them
    if token is not None and len(images) != len(captions):
        raise ValueError(f"{len(images)} images for {len(captions)} captions")
    for img, cap in zip(images if token is None else [None] * len(captions), captions, strict=True):
        name = token if token is not None else img if isinstance(img, str) else f"<{type(img).__name__}>"
        h.update(name.encode() + b"\0")
        h.update(cap.encode() + b"\0")
    h.update(extra.encode())
    return h.hexdigest()[:32]


def cache_pairs(model: SparseCLIP, tokenizer: Callable, transform: Callable,
                images: Sequence[str | Image.Image], captions: Sequence[str], path: str | Path | None = None,
                batch_size: int = 64, extra_key: str = "", progress: Callable[[int, int], None] | None = None
                ) -> FeatureCache:
    """Tower features of image-caption pairs (images as paths or PIL images), computed once.

    With ``path``, a cache there with the same key (:func:`cache_key`) is loaded instead of recomputed, and a
    new one is saved there. The last few caches computed in this process are reused too (several heads trained
    on the same towers and data in one process compute the features once). Unreadable images and empty
    captions are skipped and counted in ``meta``.
    """
    if not (model.cfg.freeze_image and model.cfg.freeze_text):
        raise ValueError("cache_pairs: both towers must be frozen (model.freeze_image, model.freeze_text); "
                         "cached features of a trained tower go stale")
    key = cache_key(model, images, captions, extra_key + repr(transform))
    if path is not None and Path(path).is_file():
        cached = FeatureCache.load(path)
        if cached.meta.get("key") == key:
            return cached
    if key in _RECENT:
        if path is not None:
            _RECENT[key].save(path)
        return _RECENT[key]
    # images are decoded and encoded a batch at a time (memory holds one batch of pixels, not the whole set)
    rows, batch, feats, skipped = [], [], [], {}
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        try:
            if not cap or not cap.strip():
                raise SkipSample("empty_caption")
            if isinstance(img, Image.Image):
                batch.append(transform(img.convert("RGB")))
            else:
                batch.append(decode_image(img, transform))
        except SkipSample as e:
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
            continue
        rows.append(i)
        if len(batch) == batch_size:
            feats.append(image_tower_features(model, batch, batch_size))
            batch = []
            if progress:
                progress(i + 1, len(images))
    if batch:
        feats.append(image_tower_features(model, batch, batch_size))
    if progress:
        progress(len(images), len(images))
    if not rows:
        raise ValueError("cache_pairs: no usable pairs")
    kept = [captions[i] for i in rows]
    unique = sorted(set(kept))  # repeated captions (templates, several rows per image) are encoded once
    at = {c: i for i, c in enumerate(unique)}
    text = text_tower_features(model, tokenizer, unique)[torch.tensor([at[c] for c in kept], dtype=torch.long)]
    cache = FeatureCache(torch.cat(feats), text,
                         {"key": key, "rows": rows, "skipped": skipped, "captions": kept})
    if path is not None:
        cache.save(path)
    _RECENT[key] = cache
    while len(_RECENT) > 2:
        _RECENT.pop(next(iter(_RECENT)))
    return cache


def cache_train_pairs(cfg: Config, model: SparseCLIP, tokenizer: Callable, transform: Callable,
                      path: str | Path, progress: bool = False) -> FeatureCache:
    """:func:`cache_pairs` of the training set as its format's entry lists it
    (:meth:`~sparseclip.data.sources.DataFormat.train_pairs`: the rows of ``data.train_data``, or the world's
    ``data.num_train`` scenes), reused from ``path`` when it matches; stops with one line (``DataError``) when
    more than ``data.max_bad_fraction`` of the rows were unusable."""
    from tqdm.auto import tqdm

    from ..data.sources import DATA_FORMATS

    d = cfg.data
    images, captions, extra = DATA_FORMATS.get(d.kind).train_pairs(d)
    bar = tqdm(total=len(images), desc="cache tower features", unit="img", disable=not progress, leave=False)

    def tick(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        cache = cache_pairs(model, tokenizer, transform, images, captions, path=path, progress=tick,
                            extra_key=extra)
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
