"""Baselines that control for what a metric could reward without any learning, and the verdicts against them.

- :func:`rate_matched_dictionary`: random directions in a feature space (e.g. the frozen towers' output, the
  heads' own input), each thresholded so that feature f fires on exactly the share ``rates[f]`` of the inputs:
  the same number of live features and the same per-feature firing rates as the model it matches, with
  nothing learnt. A metric that a narrow cap in the towers' space earns by construction (clarity measured in
  that space) scores as well here.
- :func:`bootstrap_diff`: the difference of two models' mean per-feature (or per-concept) values with a
  bootstrap interval, for the one-line verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eval.sparsity import as_numpy


@dataclass
class RandomDictionary:
    """Random directions (d, D) with per-feature thresholds (D,): codes ``max(x W - t, 0)``."""

    directions: np.ndarray
    thresholds: np.ndarray  # +inf for a feature matched to rate 0 (dead)

    def encode(self, x) -> np.ndarray:
        """(N, D) non-negative codes of inputs ``x`` (N, d) of the space the dictionary was drawn in."""
        proj = as_numpy(x, 2, "x").astype(np.float32) @ self.directions
        with np.errstate(invalid="ignore"):
            return np.maximum(proj - self.thresholds[None, :], 0.0)


def rate_matched_dictionary(x, rates, seed: int = 0) -> RandomDictionary:
    """A :class:`RandomDictionary` of ``len(rates)`` Gaussian directions in the space of ``x`` (N, d), feature f
    thresholded to fire on ``round(rates[f] * N)`` rows of ``x`` (ties aside, exactly)."""
    xs = as_numpy(x, 2, "x").astype(np.float32)
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or np.any((r < 0) | (r > 1)):
        raise ValueError("rates: a 1-d array of firing rates in [0, 1]")
    n = xs.shape[0]
    w = np.random.default_rng(seed).standard_normal((xs.shape[1], r.size)).astype(np.float32)
    w /= np.linalg.norm(w, axis=0, keepdims=True)
    proj = xs @ w
    k = np.rint(r * n).astype(int)
    ordered = -np.sort(-proj, axis=0)  # descending per column
    t = np.empty(r.size, dtype=np.float32)
    inner = (k > 0) & (k < n)
    t[inner] = ordered[k[inner], np.flatnonzero(inner)]  # the (k+1)-th largest: exactly k values above it
    t[k <= 0] = np.inf
    t[k >= n] = ordered[-1, k >= n] - 1.0
    return RandomDictionary(w, t)


def bootstrap_diff(a, b, n_boot: int = 2000, seed: int = 0, paired: bool = False,
                   level: float = 0.95) -> dict:
    """``mean(a) - mean(b)`` with a percentile bootstrap interval (NaNs dropped; ``paired``: a and b are
    values of the same units, e.g. concepts, resampled together). Returns ``{"diff", "lo", "hi", "n_a", "n_b"}``
    (NaN where either side is empty)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
        keep = ~np.isnan(a) & ~np.isnan(b)
        a, b = a[keep], b[keep]
    else:
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    out = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "n_a": int(a.size), "n_b": int(b.size)}
    if a.size == 0 or b.size == 0:
        return out
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for s in range(0, n_boot, 250):  # in chunks: bounded memory for wide codes
        m = min(250, n_boot - s)
        if paired:
            idx = rng.integers(0, a.size, (m, a.size))
            boots[s:s + m] = a[idx].mean(axis=1) - b[idx].mean(axis=1)
        else:
            boots[s:s + m] = (a[rng.integers(0, a.size, (m, a.size))].mean(axis=1)
                              - b[rng.integers(0, b.size, (m, b.size))].mean(axis=1))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    out.update(diff=float(a.mean() - b.mean()), lo=float(lo), hi=float(hi))
    return out


def verdict(d: dict) -> str:
    """``above`` / ``below`` / ``level`` from a :func:`bootstrap_diff` (the interval excludes 0 or not)."""
    if not np.isfinite(d["diff"]):
        return "n/a"
    return "above" if d["lo"] > 0 else "below" if d["hi"] < 0 else "level"


#: the name of the rate-matched random dictionary's row
RANDOM_DICTIONARY = "baseline: random dictionary (rate-matched)"


def random_dictionary_codes(towers, like, tau: float, seed: int = 0, name: str = RANDOM_DICTIONARY):
    """A :class:`~sparseclip.interpret.inputs.CodeSet` of rate-matched random dictionaries drawn in the space of
    ``towers`` (the towers' outputs, :func:`~sparseclip.interpret.inputs.tower_features`): one on the image
    side matched to ``like``'s per-feature firing rates on the images, one on the text side matched to its rates
    on the captions (and applied to the vocabulary terms)."""
    from ..eval.sparsity import firing_frequency
    from .inputs import CodeSet

    img = rate_matched_dictionary(towers.image, firing_frequency(like.image, tau), seed)
    txt = rate_matched_dictionary(towers.text, firing_frequency(like.text, tau), seed + 1)
    return CodeSet(name, img.encode(towers.image), txt.encode(towers.text), txt.encode(towers.terms),
                   {t: img.encode(v) for t, v in towers.tasks.items()})
