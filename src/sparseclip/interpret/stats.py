"""Statistics of a code matrix beyond the basic counts: firing-frequency histograms, effective rank, NCL's
class consistency, and the analysis' sparsity summary. L0, active, dead and firing frequency themselves are
defined once, in :mod:`sparseclip.eval.sparsity`.

Every function takes an (N, D) array (numpy or torch) of codes, one row per input, and is model-agnostic:
it applies equally to Sparse CLIP codes, dense CLIP embeddings and SAE codes. A feature *fires* on an
input when its value is ``> tau``; the paper's defaults are ``tau = 0.001`` and ``n_min = 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eval.sparsity import N_MIN, TAU, active_mask, as_numpy, firing_frequency


@dataclass
class FrequencyHistogram:
    """A histogram of log10 firing frequencies over the features that fire at all."""

    bin_edges: list[float]  # log10(frequency) edges
    counts: list[int]
    n_dead: int  # features that never fired (not in the histogram: log10(0) is undefined)

    def to_dict(self) -> dict:
        return {"bins": self.bin_edges, "counts": self.counts, "n_dead": self.n_dead}


def frequency_histogram(codes, tau: float = TAU, bins: int = 20) -> FrequencyHistogram:
    """Histogram of firing frequencies on a log scale, from ``1/N`` (one input) to 1 (every input)."""
    x = as_numpy(codes, 2, "codes")
    freq = firing_frequency(x, tau)
    live = freq[freq > 0]
    lo = np.log10(1.0 / max(x.shape[0], 1))
    edges = np.linspace(lo, 0.0, bins + 1) if lo < 0 else np.array([-1.0, 0.0])
    counts, _ = np.histogram(np.log10(live), bins=edges)
    return FrequencyHistogram([float(e) for e in edges], [int(c) for c in counts], int((freq == 0).sum()))


def effective_rank(codes, center: bool = True) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp`` of the entropy of the normalised singular values.

    Between 1 (all inputs on one line) and ``min(N, D)``. ``center`` subtracts the mean code first.
    """
    x = as_numpy(codes, 2, "codes")
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def class_consistency(codes, labels, tau: float = TAU, n_min: int = N_MIN, top_k: int | None = None) -> float:
    """NCL's class consistency rate (Wang et al., ICLR 2024).

    For each active feature, the share of the inputs it fires on (or of its ``top_k`` highest-activating
    inputs among them) that belong to their most frequent class; averaged over active features.
    ``labels`` is (N,) of class ids. Returns NaN when no feature is active.
    """
    x = as_numpy(codes, 2, "codes")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    _, y = np.unique(y, return_inverse=True)
    n_cls = int(y.max()) + 1 if y.size else 0
    onehot = np.eye(n_cls)[y]  # (N, C)
    act = active_mask(x, tau, n_min)
    if not act.any():
        return float("nan")
    fires = x[:, act] > tau  # (N, F)
    if top_k is not None:  # keep only each feature's top_k firing inputs
        vals = np.where(fires, x[:, act], -np.inf)
        order = np.argsort(-vals, axis=0, kind="stable")[:top_k]
        keep = np.zeros_like(fires)
        np.put_along_axis(keep, order, True, axis=0)
        fires &= keep
    per_class = onehot.T @ fires  # (C, F)
    return float((per_class.max(axis=0) / fires.sum(axis=0)).mean())
