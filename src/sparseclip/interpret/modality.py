"""Modality of features on a paired image/text set.

Per feature: the *image share* of its activation mass, ``sum_images z / (sum_images z + sum_texts z)``,
and its *activation density*, the mean activation over all inputs of both modalities (a
magnitude-weighted firing frequency). Codes are L2-normalised per row first (each input carries unit
weight, as in the contrastive space) and negative entries count as zero (dense codes). A live feature is
*multimodal* when its image share lies inside ``band`` (default 0.1-0.9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eval.sparsity import N_MIN, TAU, as_numpy, fire_counts
from ._arrays import l2_normalize

DEFAULT_BAND = (0.1, 0.9)


@dataclass
class Modality:
    """Per-feature modality statistics (all arrays have shape (D,))."""

    image_share: np.ndarray  # NaN where the feature has no mass at all
    density: np.ndarray
    live: np.ndarray  # fires > tau on >= n_min inputs of the paired set (images and texts together)

    def multimodal_fraction(self, band: tuple[float, float] = DEFAULT_BAND) -> float:
        """Fraction of live features whose image share lies in ``band`` (inclusive)."""
        return multimodal_fraction(self.image_share, self.live, band)


def modality(image_codes, text_codes, tau: float = TAU, n_min: int = N_MIN,
             normalize: bool = True) -> Modality:
    """Image share and density per feature from codes of a paired set (rows need not be paired 1:1)."""
    img = as_numpy(image_codes, 2, "image_codes")
    txt = as_numpy(text_codes, 2, "text_codes")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image codes have {img.shape[1]} features but text codes have {txt.shape[1]}")
    if normalize:
        img, txt = l2_normalize(img), l2_normalize(txt)
    img, txt = np.clip(img, 0, None), np.clip(txt, 0, None)
    mi, mt = img.sum(axis=0), txt.sum(axis=0)
    total = mi + mt
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mi / total, np.nan)
    density = total / (img.shape[0] + txt.shape[0])
    live = fire_counts(img, tau) + fire_counts(txt, tau) >= n_min  # fires on >= n_min inputs of either side
    return Modality(share, density, live)


def multimodal_fraction(image_share, live=None, band: tuple[float, float] = DEFAULT_BAND) -> float:
    """Fraction of (live) features whose image share lies in ``band = (low, high)``."""
    lo, hi = band
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"band: need 0 <= low <= high <= 1, got {band}")
    share = np.asarray(image_share, dtype=np.float64)
    keep = ~np.isnan(share) if live is None else (np.asarray(live, dtype=bool) & ~np.isnan(share))
    if not keep.any():
        return float("nan")
    s = share[keep]
    return float(((s >= lo) & (s <= hi)).mean())


#: a feature is *selective* when it fires on fewer than this share of the inputs (images and texts together)
SELECTIVE_MAX_FREQ = 0.2


def selective_multimodal_masks(image_share, live, frequency, band: tuple[float, float] = DEFAULT_BAND,
                               max_freq: float = SELECTIVE_MAX_FREQ) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: ``(selective, multimodal_selective)`` boolean masks over ALL features (live and firing on
    fewer than ``max_freq`` of the inputs; and, of those, with an image share inside ``band``)."""
    share = np.asarray(image_share, dtype=np.float64)
    sel = np.asarray(live, dtype=bool) & (np.asarray(frequency, dtype=np.float64) < max_freq)
    lo, hi = band
    mm = sel & ~np.isnan(share) & (np.nan_to_num(share, nan=-1.0) >= lo) & (np.nan_to_num(share, nan=2.0) <= hi)
    return sel, mm


def selective_multimodal(image_share, live, frequency, band: tuple[float, float] = DEFAULT_BAND,
                         max_freq: float = SELECTIVE_MAX_FREQ) -> tuple[float, float]:
    """``(live_selective, multimodal_selective)``: the shares of ALL features that are live and selective (fire
    on fewer than ``max_freq`` of the inputs), and that are live, selective and multimodal. A dense or constant
    code, whose features fire on most inputs, scores 0 on both however multimodal its features are."""
    sel, mm = selective_multimodal_masks(image_share, live, frequency, band, max_freq)
    return float(sel.mean()), float(mm.mean())


def modality_histogram(image_share, live=None, bins: int = 10) -> list[int]:
    """Counts of live features' image shares in ``bins`` equal bins over [0, 1]."""
    share = np.asarray(image_share, dtype=np.float64)
    keep = ~np.isnan(share) if live is None else (np.asarray(live, dtype=bool) & ~np.isnan(share))
    counts, _ = np.histogram(share[keep], bins=bins, range=(0.0, 1.0))
    return [int(c) for c in counts]


@dataclass
class Agreement:
    """Per feature live on a paired set (:func:`crossmodal_agreement`)."""

    features: np.ndarray  # feature ids
    f1: np.ndarray  # F1 between the pairs whose image fires it and those whose caption does
    chance: np.ndarray  # F1 of two independent sets of the same sizes
    n_image: np.ndarray  # pairs whose image fires it
    n_text: np.ndarray  # pairs whose caption fires it
    both: np.ndarray  # pairs where both fire it
    n_pairs: int


def crossmodal_agreement(image_codes, text_codes, tau: float = TAU, n_min: int = N_MIN) -> Agreement:
    """Does a feature fire on an image AND on its own caption? On a set paired 1:1 (row n of ``image_codes``
    is captioned by row n of ``text_codes``), per feature live on the pairs (firing ``> tau`` on at least
    ``n_min`` images and captions together): the F1 between the pairs whose image fires it and the pairs whose
    caption fires it, and the chance F1 of two independent sets of the same sizes (``2 n_i n_t / (N (n_i +
    n_t))``). Unlike the image share (:func:`modality`), this can fail: features that fire on images and
    captions alike but on unrelated pairs score chance.
    """
    img = as_numpy(image_codes, 2, "image_codes") > tau
    txt = as_numpy(text_codes, 2, "text_codes") > tau
    if img.shape != txt.shape:
        raise ValueError(f"paired codes must have equal shapes, got {img.shape} and {txt.shape}")
    n_i, n_t = img.sum(axis=0).astype(float), txt.sum(axis=0).astype(float)
    feats = np.flatnonzero(n_i + n_t >= n_min)
    both = (img[:, feats] & txt[:, feats]).sum(axis=0).astype(float)
    ni, nt = n_i[feats], n_t[feats]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * both / (ni + nt)
        chance = 2 * ni * nt / (img.shape[0] * (ni + nt))
    return Agreement(feats, f1, chance, ni, nt, both, int(img.shape[0]))
