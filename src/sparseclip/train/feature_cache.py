"""Frozen-tower feature caching and head-only training ("sparsify pretrained towers" fast).

When both towers are frozen (``model.freeze_image`` and ``model.freeze_text``) only the heads and the logit
scale learn, and the towers' outputs for a sample never change. So compute them once
(:func:`cache_pairs`, saved as safetensors and reused while the towers, the data and the transform are the
same) and train the heads on the cached features (:class:`HeadOnly`): a step costs two matrix products instead
of two tower forward passes.

The trainer (``sparseclip.train``, the one trainer) does it by itself when :func:`uses_feature_cache` (both
towers frozen, a finite data set: a CSV or another file format, the world with ``data.num_train``, and
``train.feature_cache``): :func:`cache_train_pairs` once, then every step runs :class:`HeadOnly` on a batch
of :class:`CachedPairsSource` (the same rows in the same order as the tower path's source, split by rank), with
the trainer's optimiser, schedule, seed, checkpoints, resume and logging unchanged. The cache itself
(:class:`~sparseclip.model.feature_cache.FeatureCache`, :func:`~sparseclip.model.feature_cache.cache_pairs`) is
the library's (:mod:`sparseclip.model.feature_cache`); evaluation reads the same file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..data.base import EpochPermutation, rank_indices
from ..model import SparseCLIP
from ..model.feature_cache import FeatureCache, head_codes
from ..model.sparse_clip import with_pre_activations


def uses_feature_cache(cfg: Config) -> bool:
    """Whether the trainer trains on cached tower features: both towers frozen, a finite data set (its format's
    entry can list it: a CSV or another file format, the world with ``data.num_train``; not a stream of shards)
    and ``train.feature_cache`` on."""
    from ..data.sources import DATA_FORMATS

    finite = DATA_FORMATS.get(cfg.data.kind).finite(cfg.data)
    return cfg.model.freeze_image and cfg.model.freeze_text and finite and cfg.train.feature_cache


def cached_batches(n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                   world_size: int = 1) -> Iterator[torch.Tensor]:
    """Row indices of rank ``rank``'s share (``batch_size`` rows) of each step, in the order a CSV source
    reads its rows (:class:`~sparseclip.data.base.EpochPermutation`); a pure function of the step, so
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
        return with_pre_activations(self.model, {
            "logit_scale": self.model.logit_scale.exp(), "image_code": img, "text_code": txt,
            "image_features": F.normalize(img, dim=-1), "text_features": F.normalize(txt, dim=-1)})


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
