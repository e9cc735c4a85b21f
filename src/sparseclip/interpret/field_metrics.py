"""The field's standard feature metrics, beside the project's own, on the same (N, D) codes.

- **Monosemanticity score** (MS; Pach et al., "Sparse autoencoders learn monosemantic features in vision-language
  models", 2025): per feature, its activations are min-max normalised over the inputs to ``a`` in [0, 1]; MS is the
  mean cosine similarity of the reference embeddings of all pairs of distinct inputs, each pair weighted by
  ``a_n a_m``. A feature firing on alike inputs (under an encoder independent of the model) scores high; a feature
  whose weight is spread evenly scores the mean pairwise cosine of the whole set (:func:`.clarity.random_clarity`).
  With unit reference vectors ``e`` the weighted sum over pairs is ``|sum a e|^2 - sum a^2``: one matrix product per
  code, no pair loop. A feature that never fires (above ``tau`` on ``n_min`` inputs) or is constant has no score.
- **k-sparse probing** (SAEBench, Karvonen et al. 2025): per binary concept, the ``k`` features with the largest
  absolute difference between their mean activation on the concept's positives and negatives are chosen on the
  training half (even inputs); a class-balanced logistic regression on those ``k`` standardised features is fitted
  there and scored on the held-out half (odd inputs) by AUROC and balanced accuracy. A concept with fewer than
  ``min_support`` positives or negatives in either half is not judged. Chance is 0.5 for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..eval.sparsity import N_MIN, TAU, active_mask, as_numpy
from ._arrays import l2_normalize, nanmean, paired_auroc

#: the sizes of the probes reported (SAEBench reports k = 1, 2, 5, 10, 20, 50; 1 and 5 are its headline pair)
PROBE_KS: tuple[int, ...] = (1, 5)
#: positives and negatives a concept needs in each half to be judged
MIN_SUPPORT = 5


def feature_monosemanticity(codes, reference, tau: float = TAU, n_min: int = N_MIN) -> np.ndarray:
    """Per feature MS, shape (D,); NaN for a feature that is not active or is constant over the inputs."""
    x = as_numpy(codes, 2, "codes").astype(np.float64)
    ref = l2_normalize(as_numpy(reference, 2, "reference").astype(np.float64))
    if ref.shape[0] != x.shape[0]:
        raise ValueError(f"reference has {ref.shape[0]} rows but codes have {x.shape[0]}")
    keep = np.linalg.norm(ref, axis=1) > 0  # an input without a reference vector is not scored
    x, ref = x[keep], ref[keep]
    out = np.full(x.shape[1], np.nan)
    if x.shape[0] < 2:
        return out
    lo, hi = x.min(axis=0), x.max(axis=0)
    use = active_mask(x, tau, max(n_min, 2)) & (hi > lo)
    if not use.any():
        return out
    a = (x[:, use] - lo[use]) / (hi[use] - lo[use])  # (N, F) in [0, 1]
    s = a.T @ ref  # (F, E)
    sq = (a * a).sum(axis=0)
    tot = a.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[use] = ((s * s).sum(axis=1) - sq) / (tot * tot - sq)
    return out


def monosemanticity_score(codes, reference, tau: float = TAU, n_min: int = N_MIN) -> float:
    """MS of a code: the mean of :func:`feature_monosemanticity` over the features that have one (NaN if none)."""
    return nanmean(feature_monosemanticity(codes, reference, tau, n_min))


@dataclass
class ProbeResult:
    """k-sparse probing of one code: per concept (NaN where not judged) and the chosen features."""

    k: int
    auroc: np.ndarray  # (C,)
    balanced_accuracy: np.ndarray  # (C,)
    features: list[np.ndarray]  # per concept, the k feature ids chosen on the training half (empty: not judged)

    def summary(self) -> dict:
        """The row columns: mean held-out AUROC and balanced accuracy over the judged concepts."""
        return {f"ksparse_auroc_{self.k}": nanmean(self.auroc),
                f"ksparse_bacc_{self.k}": nanmean(self.balanced_accuracy)}


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 30) -> tuple[np.ndarray, float]:
    """Class-balanced L2-regularised logistic regression by Newton's method (``l2`` on the weights, not the bias)."""
    n, d = x.shape
    pos = y.sum()
    sw = np.where(y > 0, n / (2 * pos), n / (2 * (n - pos)))  # balanced sample weights (sum to n)
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (sw * (p - y)) + reg * w
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def k_sparse_probing(codes, concepts, ks: Sequence[int] = PROBE_KS, min_support: int = MIN_SUPPORT,
                     ) -> dict[int, ProbeResult]:
    """k-sparse probes of ``codes`` (N, D) for every column of the binary ``concepts`` (N, C), one
    :class:`ProbeResult` per ``k`` in ``ks``: features chosen and probes fitted on the even inputs, scored on
    the odd ones."""
    x = as_numpy(codes, 2, "codes").astype(np.float64)
    y_all = np.asarray(concepts, dtype=bool)
    if y_all.ndim != 2 or y_all.shape[0] != x.shape[0]:
        raise ValueError(f"concepts must be (N, C) with N = {x.shape[0]} rows, got {y_all.shape}")
    tr, te = np.arange(0, x.shape[0], 2), np.arange(1, x.shape[0], 2)
    c = y_all.shape[1]
    out = {k: ProbeResult(k, np.full(c, np.nan), np.full(c, np.nan), [np.zeros(0, int)] * c) for k in ks}
    ytr, yte = y_all[tr].astype(np.float64), y_all[te].astype(np.float64)
    npos_tr, npos_te = ytr.sum(axis=0), yte.sum(axis=0)
    judged = ((np.minimum(npos_tr, len(tr) - npos_tr) >= min_support)
              & (np.minimum(npos_te, len(te) - npos_te) >= min_support))
    if not judged.any():
        return out
    xtr, xte = x[tr], x[te]
    with np.errstate(invalid="ignore", divide="ignore"):  # (C, D) mean activation on positives minus negatives
        diff = (ytr.T @ xtr) / npos_tr[:, None] - ((1 - ytr).T @ xtr) / (len(tr) - npos_tr)[:, None]
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd = np.where(sd > 0, sd, np.inf)  # a constant feature standardises to 0 (it carries nothing)
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    for ci in np.flatnonzero(judged):
        order = np.argsort(-np.abs(diff[ci]), kind="stable")
        for k in ks:
            feats = order[:k]
            w, b = _logistic(ztr[:, feats], ytr[:, ci])
            score = zte[:, feats] @ w + b
            res = out[k]
            res.features[ci] = feats
            res.auroc[ci] = paired_auroc(score[:, None], yte[:, ci:ci + 1])[0]
            pred = score > 0
            pos = yte[:, ci] > 0
            res.balanced_accuracy[ci] = 0.5 * (pred[pos].mean() + (~pred[~pos]).mean())
    return out
