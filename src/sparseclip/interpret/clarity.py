"""Clarity (PAPER.md): for each active feature, the mean pairwise cosine similarity, under a fixed
reference encoder, of the inputs on which the feature fires; averaged over active features.

The reference embeddings are passed in as an (N, E) array aligned row by row with the codes, so any
encoder can serve (the project's default choice is documented in ``docs/interpret.md``). The mean over
all pairs ``i != j`` of a set of unit vectors ``e`` is ``(|sum e|^2 - n) / (n (n - 1))``, so every
feature costs one matrix product and no pair loop.
"""

from __future__ import annotations

import numpy as np

from ..eval.sparsity import N_MIN, TAU, active_mask, as_numpy
from ._arrays import l2_normalize


def _mean_pairwise_cos(mask: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per column of the boolean (N, F) ``mask``: mean pairwise cosine of the selected rows of ``ref``."""
    m = mask.astype(np.float64)
    n = m.sum(axis=0)
    sums = m.T @ ref  # (F, E): sum of the unit reference vectors of each feature's inputs
    sq = (sums * sums).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sq - n) / (n * (n - 1))


def feature_clarity(codes, reference, tau: float = TAU, n_min: int = N_MIN) -> np.ndarray:
    """Per feature clarity, shape (D,); NaN for features that are not active."""
    x = as_numpy(codes, 2, "codes")
    ref = l2_normalize(as_numpy(reference, 2, "reference"))
    if ref.shape[0] != x.shape[0]:
        raise ValueError(f"reference has {ref.shape[0]} rows but codes have {x.shape[0]}")
    keep = np.linalg.norm(ref, axis=1) > 0  # an input without a reference vector (e.g. no label) is not scored
    x, ref = x[keep], ref[keep]
    out = np.full(x.shape[1], np.nan)
    act = active_mask(x, tau, max(n_min, 2))
    if act.any():
        out[act] = _mean_pairwise_cos(x[:, act] > tau, ref)
    return out


def clarity(codes, reference, tau: float = TAU, n_min: int = N_MIN) -> float:
    """Clarity: the mean of :func:`feature_clarity` over active features (NaN if none is active)."""
    per = feature_clarity(codes, reference, tau, n_min)
    live = per[~np.isnan(per)]
    return float(live.mean()) if live.size else float("nan")


def clarity_all(codes, reference, tau: float = TAU, n_min: int = N_MIN) -> float:
    """Clarity over ALL features, an inactive (dead) feature counting as 0: a code with many dead features
    cannot score well on the few that fire."""
    per = feature_clarity(codes, reference, tau, n_min)
    return float(np.nan_to_num(per, nan=0.0).sum() / per.size) if per.size else float("nan")


def random_clarity(reference) -> float:
    """The random-inputs baseline: the clarity a feature firing on a uniformly random subset would get
    in expectation, i.e. the mean pairwise cosine over all distinct pairs of the reference set."""
    ref = l2_normalize(as_numpy(reference, 2, "reference"))
    ref = ref[np.linalg.norm(ref, axis=1) > 0]  # inputs without a reference vector are not scored
    if ref.shape[0] < 2:
        raise ValueError("reference: need at least 2 rows for a pairwise similarity")
    return float(_mean_pairwise_cos(np.ones((ref.shape[0], 1), dtype=bool), ref)[0])
