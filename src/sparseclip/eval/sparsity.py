"""Sparsity of codes: the one definition of L0, active, dead and firing frequency.

Training logs (:func:`batch_stats`), evaluation (:func:`sparsity_stats`) and the analysis
(:mod:`sparseclip.interpret`) all count through these functions. Every function takes an (N, D) matrix of
codes (numpy array or torch tensor, any float dtype), one row per input. A feature *fires* on an input when its
value is ``> tau``; the paper's defaults are ``tau = 0.001`` and ``n_min = 2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the paper's firing threshold and minimum number of inputs for a feature to count as active
TAU = 1e-3
N_MIN = 2


def as_numpy(x: Any, ndim: int | None = None, name: str = "array") -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested list) as a float64 numpy array of ``ndim`` dims."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {tuple(arr.shape)}")
    return arr


def _matrix(codes: Any) -> Any:
    """(N, D) codes, checked: a torch tensor stays a tensor on its device (so a GPU batch is counted where it
    is, and only per-feature counts leave it); anything else becomes a numpy array (no float64 copy)."""
    x = codes.detach() if hasattr(codes, "detach") else np.asarray(codes)
    if x.ndim != 2:
        raise ValueError(f"codes: expected a 2-d array, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("codes: need at least one row")
    return x


def l0(codes: Any, eps: float = 0.0) -> float:
    """Mean number of non-zero entries (``|x| > eps``) per row."""
    x = _matrix(codes)
    nz = (x != 0) if eps == 0 else (abs(x) > eps)
    per_row = nz.sum(1)
    return float(per_row.double().mean()) if hasattr(per_row, "double") else float(per_row.mean())


def fire_counts(codes: Any, tau: float = TAU) -> np.ndarray:
    """Per feature, the number of inputs on which it fires (``> tau``), as a numpy array."""
    counts = (_matrix(codes) > tau).sum(0)
    return counts.cpu().numpy() if hasattr(counts, "cpu") else np.asarray(counts)


def active_mask(codes: Any, tau: float = TAU, n_min: int = N_MIN) -> np.ndarray:
    """Boolean (D,): features that fire (``> tau``) on at least ``n_min`` inputs."""
    return fire_counts(codes, tau) >= n_min


def active_fraction(codes: Any, tau: float = TAU, n_min: int = N_MIN) -> float:
    """Fraction of features that are active (fire ``> tau`` on ``>= n_min`` inputs)."""
    return float(active_mask(codes, tau, n_min).mean())


def dead_mask(codes: Any, tau: float = TAU) -> np.ndarray:
    """Boolean (D,): features that never fire (``> tau``) on any input."""
    return fire_counts(codes, tau) == 0


def firing_frequency(codes: Any, tau: float = TAU) -> np.ndarray:
    """Per feature, the fraction of inputs on which it fires."""
    return fire_counts(codes, tau) / _matrix(codes).shape[0]


def sparsity_stats(codes: Any, tau: float = TAU, n_min: int = N_MIN) -> dict:
    """L0 (mean non-zeros per input: exact ReLU zeros), L0 at ``tau`` (mean entries with ``|value| > tau``),
    each also as % of dims, % of features active (fire > tau on >= n_min inputs) and % dead (never fire > tau),
    and the code width."""
    x = _matrix(codes)
    counts = fire_counts(x, tau)
    value = l0(x)
    at_tau = l0(x, eps=tau)  # entries with |value| > tau per row: L0 at the paper's firing threshold
    return {"L0": value, "L0_pct": 100.0 * value / x.shape[1], "L0_tau": at_tau,
            "L0_tau_pct": 100.0 * at_tau / x.shape[1], "tau": tau,
            "active_pct": 100.0 * float((counts >= n_min).mean()),
            "dead_pct": 100.0 * float((counts == 0).mean()), "dim": int(x.shape[1])}


def batch_stats(code: Any) -> dict:
    """The training log's per-batch view: L0, L0 as % of dims, and % of dims non-zero on any input of the
    batch (``alive_pct``: fires with ``tau = 0`` on at least one input)."""
    x = _matrix(code)
    value = l0(x)
    return {"l0": value, "l0_pct": 100 * value / x.shape[1],
            "alive_pct": 100 * active_fraction(x, tau=0.0, n_min=1)}


class FiringWindow:
    """Per feature, whether it fired (``> tau``) on any input seen since the window was last taken: the training
    log's view of dead features over training (SAE training calls a feature dead when it has not fired for a
    window of inputs). :meth:`add` each batch's codes; :meth:`take` returns the window's shares and starts a new
    one. Counting stays on the codes' device; only the (D,) mask is kept."""

    def __init__(self, tau: float = TAU):
        self.tau = tau
        self.fired: Any = None
        self.inputs = 0

    def add(self, codes: Any) -> None:
        x = _matrix(codes)
        fired = (x > self.tau).any(0)
        self.fired = fired if self.fired is None else (self.fired | fired)
        self.inputs += int(x.shape[0])

    def take(self) -> dict:
        """``unfired_pct``: % of features that fired on none of the window's inputs; ``window_inputs``: how many
        inputs the window held. Empty dict for an empty window."""
        if self.fired is None:
            return {}
        fired = self.fired.float().mean() if hasattr(self.fired, "float") else self.fired.mean()
        out = {"unfired_pct": 100.0 * (1.0 - float(fired)), "window_inputs": self.inputs}
        self.fired, self.inputs = None, 0
        return out
